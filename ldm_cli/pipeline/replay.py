"""`--from IMAGE`: what the image recorded about LoRAs and its model, checked against what we have."""

from __future__ import annotations

from pathlib import Path

from ldm_cli.models import network_files


def recorded_loras(record: dict, lora_dirs) -> tuple[list[str], list[str]]:
    """The --lora values an ldm record asks for ("FILE:SCALE"), and the names that cannot be found.

    Each LoRA is taken from its recorded path if that file still exists, else by name in the LoRA
    folders. LoRAs that came from <lora:...> tags are not listed: the recorded prompt brings them."""
    entries = [e for e in (record.get("networks") or {}).get("loras", []) if e.get("source") == "flag"]
    if not entries:  # records made before the networks entry: settings.loras holds "FILE:SCALE"
        entries = [_entry_from_text(v) for v in (record.get("settings") or {}).get("loras") or []]
    files = network_files.index(lora_dirs, network_files.LORA_SUFFIXES) if lora_dirs else {}
    found, missing = [], []
    for entry in entries:
        path = Path(entry["path"])
        if not path.is_file():
            path = network_files.lookup(entry.get("name") or path.stem, files)
        if path is None:
            missing.append(entry.get("name") or Path(entry["path"]).stem)
        else:
            found.append(f"{path}:{entry.get('scale', 1.0):g}")
    return found, missing


def _entry_from_text(value: str) -> dict:
    head, sep, tail = value.rpartition(":")
    try:
        return {"path": head, "scale": float(tail), "name": Path(head).stem} if sep else {"path": value, "scale": 1.0}
    except ValueError:
        return {"path": value, "scale": 1.0, "name": Path(value).stem}


def model_mismatch(recorded: str | None, components) -> str | None:
    """One warning line when the recorded model hash is not the model in use, else None."""
    if not recorded:
        return None
    from ldm_cli.files.a1111_hashes import old_model_hash
    from ldm_cli.files.hashing import sha256_files

    files = components.weight_files.get("checkpoint") or components.weight_files.get("unet") or []
    if not files:
        return None
    current = sha256_files(files)
    recorded = recorded.strip().lower()
    if current.startswith(recorded):
        return None
    if len(recorded) == 8 and len(files) == 1 and old_model_hash(files[0]) == recorded:
        return None  # A1111's pre-2023 short hash of the same file
    what = "checkpoint" if "checkpoint" in components.weight_files else "UNet"
    return (f"warning: --from: the image records Model hash {recorded}, but the model in use ({components.source.spec}) "
            f"has {what} hash {current[:max(len(recorded), 10)]}; the picture will differ unless it is the same model")
