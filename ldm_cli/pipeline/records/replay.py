"""`--from IMAGE`: what the image recorded about LoRAs and its model, checked against what we have."""

from __future__ import annotations

from pathlib import Path

from ldm_cli.models import network_files


def networks_from_record(record: dict, path: Path, lora_dirs, embedding_dirs, warn) -> dict:
    """The LoRAs, embeddings and model hash an ldm record used, as settings values; names it cannot find
    are given to `warn` in one line per kind."""
    lora_folders = network_files.folders("--lora-dir", lora_dirs, network_files.LORA_DIR_ENV)
    loras, missing = recorded_loras(record, lora_folders)
    if missing:
        warn(f"warning: --from {path}: LoRAs it used cannot be found (not at their recorded path, not in "
             f"--lora-dir/${network_files.LORA_DIR_ENV}): {', '.join(missing)}; the picture will differ")
    embedding_folders = network_files.folders("--embeddings-dir", embedding_dirs, network_files.EMBEDDINGS_DIR_ENV)
    embeddings, missing = recorded_embeddings(record, embedding_folders)
    if missing:
        warn(f"warning: --from {path}: embeddings it used cannot be found (not at their recorded path, not in "
             f"--embeddings-dir/${network_files.EMBEDDINGS_DIR_ENV}): {', '.join(missing)}; the picture will differ")
    hashes = record["model"].get("hashes") or {}
    return {"loras": loras, "embeddings": embeddings, "recorded_tag_loras": recorded_tag_loras(record),
            "recorded_model_hash": hashes.get("checkpoint") or hashes.get("unet")}


def warn_missing_a1111_embeddings(fields: dict, path: Path, embedding_dirs, warn) -> None:
    folders = network_files.folders("--embeddings-dir", embedding_dirs, network_files.EMBEDDINGS_DIR_ENV)
    missing = missing_a1111_embeddings(fields, folders)
    if missing:
        warn(f"warning: --from {path}: embeddings named in its TI hashes are not in --embeddings-dir/"
             f"${network_files.EMBEDDINGS_DIR_ENV}: {', '.join(missing)}; their words reach CLIP as plain text")


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


def recorded_tag_loras(record: dict) -> dict[str, str]:
    """{name: path} of the LoRAs the record's <lora:...> tags resolved to, where those files still exist."""
    entries = (record.get("networks") or {}).get("loras", [])
    return {e["name"]: e["path"] for e in entries if e.get("source") == "prompt" and Path(e["path"]).is_file()}


def recorded_embeddings(record: dict, embedding_dirs) -> tuple[list[str], list[str]]:
    """--embedding values ("FILE:TOKEN") for the embeddings an ldm record used, and the tokens not found."""
    files = network_files.index(embedding_dirs, network_files.EMBEDDING_SUFFIXES) if embedding_dirs else {}
    found, missing = [], []
    for entry in (record.get("networks") or {}).get("embeddings", []):
        path = Path(entry["file"]) if Path(entry["file"]).is_file() else network_files.lookup(entry["token"], files)
        if path is None:
            missing.append(entry["token"])
        else:
            found.append(f"{path}:{entry['token']}")
    return found, missing


def missing_a1111_embeddings(fields: dict, embedding_dirs) -> list[str]:
    """The names in an infotext's `TI hashes` that are not in the embeddings folders."""
    from ldm_cli.files.a1111_hashes import parse_hashes_field

    names = list(parse_hashes_field(fields.get("TI hashes") or ""))
    files = network_files.index(embedding_dirs, network_files.EMBEDDING_SUFFIXES) if embedding_dirs else {}
    return [name for name in names if network_files.lookup(name, files) is None]


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
