"""Provenance carried inside every PNG.

Two text chunks:
  "parameters" - the A1111 line format, read by the tools people already use (Civitai, prompt readers);
  "ldm"        - our complete JSON record: every setting, model id, component hashes, versions, timings.
"""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

from ldm_cli.errors import InputFileError

JSON_KEY = "ldm"
A1111_KEY = "parameters"
FORMAT_VERSION = 1


def a1111_parameters(prompt: str, negative_prompt: str, fields: dict) -> str:
    """Prompt, optional 'Negative prompt:' line, then 'Key: value, ...' (values quoted when needed)."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    pairs = [f"{key}: {_quote(value)}" for key, value in fields.items() if value not in (None, "")]
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text) if any(c in text for c in ",:\n") else text


def parse_a1111(text: str) -> dict:
    """Parse a `parameters` chunk back into prompt, negative prompt and the key/value fields."""
    lines = text.rstrip("\n").split("\n")
    fields = dict(_split_pairs(lines[-1]))
    body = lines[:-1] if len(fields) >= 3 else lines
    fields = fields if len(fields) >= 3 else {}
    negative = [i for i, line in enumerate(body) if line.startswith("Negative prompt: ")]
    if negative:
        i = negative[0]
        prompt = "\n".join(body[:i])
        negative_prompt = "\n".join(body[i:])[len("Negative prompt: "):]
    else:
        prompt, negative_prompt = "\n".join(body), ""
    return {"prompt": prompt, "negative_prompt": negative_prompt, "fields": fields}


_PAIR = re.compile(r'\s*([\w /\-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _split_pairs(line: str):
    for match in _PAIR.finditer(line):
        key, value = match.group(1).strip(), match.group(2).strip()
        if value.startswith('"'):
            value = json.loads(value)
        yield key, value


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("ldm-cli", "torch", "diffusers", "transformers", "safetensors"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def read_png_metadata(path: Path) -> dict:
    """An image's generation metadata: {'ldm': dict or None, 'parameters': str or None, 'fooocus': dict or None}.

    PNG text chunks (ours, A1111's), A1111's EXIF UserComment in JPEG/WebP, and Fooocus' JSON record
    (given back as an A1111 infotext in 'parameters', the record itself in 'fooocus')."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from ldm_cli.files.foreign_metadata import as_fooocus, exif_text, fooocus_to_a1111

    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # only the text chunks are read
            text = dict(getattr(image, "text", {}) or {})
            comment, maker_note = exif_text(image) if A1111_KEY not in text else (None, None)
            jpeg_comment = image.info.get("comment")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder, not a PNG file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputFileError(f"{path}: refusing a possible decompression bomb (it claims over "
                             f"{Image.MAX_IMAGE_PIXELS // 10**6} megapixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # PIL's ways to say "broken"
        raise InputFileError(f"{path}: not a readable image ({' '.join(str(exc).split())})") from None
    record = None
    if JSON_KEY in text:
        try:
            record = json.loads(text[JSON_KEY])
        except (json.JSONDecodeError, RecursionError):
            raise InputFileError(f"{path}: its ldm metadata chunk is not valid JSON") from None
        if not isinstance(record, dict):
            raise InputFileError(f"{path}: its ldm metadata chunk is JSON {type(record).__name__}, not an object; "
                                 "it was not written by ldm")
    parameters = text.get(A1111_KEY) if isinstance(text.get(A1111_KEY), str) else None
    parameters = parameters or comment
    if parameters is None and isinstance(jpeg_comment, bytes) and jpeg_comment.strip():
        parameters = jpeg_comment.decode("utf-8", errors="replace")
    fooocus = as_fooocus(parameters, text.get("fooocus_scheme") or maker_note)
    if fooocus is not None:
        parameters = fooocus_to_a1111(fooocus)
    return {JSON_KEY: record, A1111_KEY: parameters, "fooocus": fooocus}
