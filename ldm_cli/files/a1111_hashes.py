"""The short hashes A1111 writes into infotexts, so ldm's records match theirs for the same files.

  Model hash   first 10 hex of the SHA-256 of the whole checkpoint file (A1111 >= 1.0)
  old hash     8 hex: SHA-256 of 64 KiB read at offset 1 MiB (A1111 before 2023, `model_hash`)
  Lora hashes  first 12 hex of kohya's `sshs_model_hash` metadata when the file has it, else of the
               "addnet" hash: SHA-256 of a .safetensors file's tensor payload, i.e. everything after
               the 8-byte header length and the JSON header (kohya's sd-scripts hash, A1111
               modules/hashes.py addnet_hash_safetensors); other files: SHA-256 of the whole file
  TI hashes    first 12 hex of the SHA-256 of the whole embedding file
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ldm_cli.files.hashing import cached_sha256, sha256_file


def addnet_sha256(path: Path) -> str:
    """SHA-256 of the bytes after a safetensors header (cached like sha256_file)."""
    if Path(path).suffix != ".safetensors":
        return sha256_file(path)
    return cached_sha256(path, "addnet", _past_safetensors_header)


def _past_safetensors_header(handle) -> None:
    header_length = int.from_bytes(handle.read(8), "little")
    handle.seek(8 + header_length)


def lora_short_hash(path: Path) -> str:
    """What A1111 writes in `Lora hashes`: kohya's recorded `sshs_model_hash` when the file has one, else
    the addnet hash, 12 hex digits (A1111 extensions-builtin/Lora/network.py NetworkOnDisk)."""
    recorded = safetensors_metadata(path).get("sshs_model_hash")
    return (recorded or addnet_sha256(path))[:12]


def safetensors_metadata(path: Path) -> dict:
    if Path(path).suffix != ".safetensors":
        return {}
    import json

    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(min(length, 100 << 20)))
        return dict(header.get("__metadata__") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def embedding_short_hash(path: Path) -> str:
    return sha256_file(path)[:12]


def model_short_hash(path: Path) -> str:
    return sha256_file(path)[:10]


def old_model_hash(path: Path) -> str:
    """A1111's pre-2023 8-hex 'model hash' (cheap: reads 64 KiB)."""
    with open(path, "rb") as handle:
        handle.seek(0x100000)
        return hashlib.sha256(handle.read(0x10000)).hexdigest()[:8]


def hash_alias(name: str) -> str:
    """The name as A1111 writes it in `Lora hashes`/`TI hashes` (':' and ',' removed)."""
    return name.replace(":", "").replace(",", "")


def hashes_field(pairs: list[tuple[str, str]]) -> str:
    """'name: hash, name2: hash2' (A1111 joins with ', '; the whole value is then quoted)."""
    return ", ".join(f"{hash_alias(name)}: {short}" for name, short in pairs)


def parse_hashes_field(value: str) -> dict[str, str]:
    """The reverse of hashes_field: {name: short hash}."""
    out = {}
    for item in value.split(","):
        name, sep, short = item.strip().rpartition(":")
        if sep and name.strip():
            out[name.strip()] = short.strip()
    return out
