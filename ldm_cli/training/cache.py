"""A content-addressed tensor cache on disk (latents, text embeddings), reusable across runs.

Keys hash everything the tensor depends on (image bytes, size, crop, flip, component weights),
so a changed image or model never reads a stale entry. Writes are atomic (temp file + rename),
so an interrupted run leaves no half-written entry; an unreadable entry is simply recomputed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_key(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


class TensorCache:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, key: str):
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["tensor"]
        except Exception:  # noqa: BLE001 - a corrupt entry costs a recompute, nothing more
            return None

    def put(self, key: str, tensor) -> None:
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"tensor": tensor.detach().cpu().contiguous()}, str(tmp))
        os.replace(tmp, path)

    def get_or_compute(self, key: str, compute):
        tensor = self.get(key)
        if tensor is not None:
            self.hits += 1
            return tensor
        self.misses += 1
        tensor = compute()
        self.put(key, tensor)
        return tensor
