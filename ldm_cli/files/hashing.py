"""SHA-256 of weight files, cached by (path, size, mtime) so multi-GB checkpoints hash once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("LDM_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ldm"
    return Path(base)


def sha256_file(path: Path) -> str:
    return cached_sha256(path)


def cached_sha256(path: Path, kind: str = "", skip=None) -> str:
    """SHA-256 of a file's bytes, from `skip(handle)` on when given (it seeks past a header);
    cached per (kind, path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{kind + '|' if kind else ''}{path}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = cache_dir() / "hashes.json"
    cache = _read_cache(cache_file)
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if skip is not None:
            skip(handle)
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    cache[key] = digest.hexdigest()
    _write_cache(cache_file, cache)
    return cache[key]


def sha256_files(paths: list[Path]) -> str:
    """One hash for a component stored in one or more files (hash of the per-file hashes)."""
    if len(paths) == 1:
        return sha256_file(paths[0])
    return hashlib.sha256("".join(sha256_file(p) for p in paths).encode()).hexdigest()


def _read_cache(cache_file: Path) -> dict:
    try:
        return json.loads(cache_file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_cache(cache_file: Path, cache: dict) -> None:
    try:  # a cache we cannot write only costs time later
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_file)
    except OSError:
        pass
