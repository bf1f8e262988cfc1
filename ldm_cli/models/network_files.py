"""Find LoRA and embedding files by name in folders (`--lora-dir`, `--embeddings-dir`), as A1111 does:
the name is the file's stem, looked up in the folder and its subfolders (exact, then ignoring case)."""

from __future__ import annotations

import os
from pathlib import Path

from ldm_cli.errors import UsageError

LORA_DIR_ENV = "LDM_LORA_DIR"
EMBEDDINGS_DIR_ENV = "LDM_EMBEDDINGS_DIR"
LORA_SUFFIXES = (".safetensors",)
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")


def folders(flag: str, given, env: str) -> tuple[Path, ...]:
    """The folders from the flag (repeatable), else from the environment variable (os.pathsep-separated).
    A flag naming no folder is an error; a stale environment entry is skipped (it may be set for every run)."""
    if not given:
        found = [Path(p).expanduser() for p in os.environ.get(env, "").split(os.pathsep) if p.strip()]
        return tuple(folder for folder in found if folder.is_dir())
    found = [Path(p).expanduser() for p in given]
    for folder in found:
        if not folder.is_dir():
            raise UsageError(f"{flag} {folder}: no such folder; pass a folder of files named after what prompts call them")
    return tuple(found)


def index(dirs, suffixes) -> dict[str, Path]:
    """{stem: path} of every matching file under the folders (first folder wins on a clash)."""
    found: dict[str, Path] = {}
    for folder in dirs:
        for root, _subdirs, files in sorted(os.walk(folder, followlinks=True)):
            for name in sorted(files):
                path = Path(root) / name
                if path.suffix.lower() in suffixes and not name.startswith("."):
                    found.setdefault(path.name[: -len(path.suffix)], path)
    return found


def lookup(name: str, files: dict[str, Path]) -> Path | None:
    if name in files:
        return files[name]
    lowered = {stem.lower(): path for stem, path in files.items()}
    return lowered.get(name.lower()) or _by_alias(name, files)


def _by_alias(name: str, files: dict[str, Path]) -> Path | None:
    """A1111 also finds a LoRA by the `ss_output_name` kohya records in its header (read only when the
    stem did not match)."""
    from ldm_cli.files.a1111_hashes import safetensors_metadata

    for path in files.values():
        if path.suffix == ".safetensors" and safetensors_metadata(path).get("ss_output_name") == name:
            return path
    return None
