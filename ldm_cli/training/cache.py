"""A content-addressed tensor cache on disk (latents, text embeddings), reusable across runs.

Keys hash everything the tensor depends on (image bytes, size, crop, flip, component weights),
so a changed image or model never reads a stale entry. Writes are atomic (temp file + rename),
so an interrupted run leaves no half-written entry; an unreadable entry is simply recomputed.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def cache_key(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


class TensorCache:
    def __init__(self, folder: Path, warn=None):
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0
        self.unwritable = False
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, key: str):
        from safetensors.torch import load_file

        path = self.path(key)
        try:
            if not path.is_file():
                return None
        except OSError:  # a part of the path is a file, or it cannot be searched
            return None
        try:
            return load_file(str(path))["tensor"]
        except Exception:  # noqa: BLE001 - a corrupt entry costs a recompute, nothing more
            return None

    def put(self, key: str, tensor) -> None:
        """Store an entry; a cache we cannot write (full disk, a file in the way, read-only) is only
        a warning, once: training goes on with the tensors in memory."""
        from safetensors.torch import save_file

        from ldm_cli.errors import as_os_error, os_cause

        if self.unwritable:
            return
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({"tensor": tensor.detach().cpu().contiguous()}, str(tmp))
            os.replace(tmp, path)
        except Exception as exc:  # noqa: BLE001 - safetensors wraps the OS error in its own type
            cause = as_os_error(exc)
            if cause is None:
                raise
            self.unwritable = True
            self.warn(f"warning: cannot write the cache in {self.folder}: {os_cause(cause)}; "
                      "continuing without it (set LDM_CACHE_DIR to a writable folder to reuse latents across runs)")
        finally:
            if tmp.exists():
                tmp.unlink(missing_ok=True)

    def get_or_compute(self, key: str, compute):
        tensor = self.get(key)
        if tensor is not None:
            self.hits += 1
            return tensor
        self.misses += 1
        tensor = compute()
        self.put(key, tensor)
        return tensor
