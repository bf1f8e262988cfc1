"""The settings an `ldm` PNG record holds, read defensively: a record is file content, not code.

A field that is missing or of the wrong type is named in one line (the file was not written by
ldm, or was edited), instead of failing deep inside the pipeline.
"""

from __future__ import annotations

from pathlib import Path

from ldm_cli.errors import UsageError

_NUMBER = (int, float)
# field path -> (accepted types, required)
_FIELDS = {
    ("prompt",): (str, True),
    ("seed",): (int, True),
    ("settings", "negative_prompt"): (str, True),
    ("settings", "steps"): (int, True),
    ("settings", "guidance"): (_NUMBER, True),
    ("settings", "height"): (int, True),
    ("settings", "width"): (int, True),
    ("settings", "scheduler"): ((str, type(None)), False),
    ("model", "spec"): ((str, type(None)), False),
    ("model", "revision"): ((str, type(None)), False),
}
_KEYS = {("prompt",): "prompt", ("seed",): "seed", ("model", "spec"): "model", ("model", "revision"): "revision"}


def settings_from_record(record: dict, path: Path) -> dict:
    """{"prompt", "seed", "negative_prompt", "steps", ...} from an ldm generate record, type-checked."""
    values = {}
    for keys, (types, required) in _FIELDS.items():
        value = _dig(record, keys, path)
        name = ".".join(keys)
        if value is _MISSING:
            if required:
                raise UsageError(f"--from {path}: its ldm record lacks {name}; it was not written by `ldm generate` "
                                 "(or was edited); pass the settings as flags instead")
            value = None
        if isinstance(value, bool) or not isinstance(value, types):
            raise UsageError(f"--from {path}: its ldm record has {name} = {_show(value)}, which is not "
                             f"{_type_words(types)}; the record was edited or is damaged")
        values[_KEYS.get(keys, keys[-1])] = value
    _check_img2img(record.get("img2img"), path)
    return values


_MISSING = object()


def _dig(record: dict, keys: tuple[str, ...], path: Path):
    value = record
    for i, key in enumerate(keys):
        if not isinstance(value, dict):
            raise UsageError(f"--from {path}: its ldm record has {'.'.join(keys[:i])} that is not a JSON object; "
                             "the record was edited or is damaged")
        if key not in value:
            return _MISSING
        value = value[key]
    return value


def _check_img2img(img2img, path: Path) -> None:
    if not img2img:
        return
    ok = isinstance(img2img, dict) and isinstance(img2img.get("strength"), _NUMBER) and any(
        isinstance(img2img.get(k), str) for k in ("init_image", "init_latents"))
    if not ok:
        raise UsageError(f"--from {path}: its ldm record's img2img part lacks init_image/init_latents or strength; "
                         "the record was edited or is damaged")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_words(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    words = {str: "text", int: "a whole number", float: "a number", type(None): "null"}
    return " or ".join(dict.fromkeys(words[t] for t in types))
