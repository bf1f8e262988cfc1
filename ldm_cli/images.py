"""Writing images: PNG with text chunks, atomically, never over an existing file."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin


def slugify(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "image"


def free_path(path: Path) -> Path:
    """`path` if nothing is there, else the first of name-2.png, name-3.png, ... that is free."""
    if not path.exists():
        return path
    n = 2
    while (candidate := path.with_name(f"{path.stem}-{n}{path.suffix}")).exists():
        n += 1
    return candidate


def save_png(pixels: np.ndarray, path: Path, text: dict[str, str] | None = None) -> Path:
    """Write [H,W,3] uint8 to `path` (or the next free name); returns the path actually written.

    The file is written under a temporary name and hard-linked into place, so an interrupted run
    leaves no partial PNG and a file that appeared meanwhile is never replaced.
    """
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".ldm-", suffix=".png.part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(pixels).save(handle, format="PNG", pnginfo=info)
        return _link_to_free_name(Path(tmp_name), path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _link_to_free_name(tmp: Path, wanted: Path) -> Path:
    while True:
        target = free_path(wanted)
        try:
            os.link(tmp, target)
            return target
        except FileExistsError:
            continue  # someone took the name between the check and the link: try the next one


def contact_sheet(frames: list[np.ndarray], columns: int = 10, thumb: int = 128) -> np.ndarray:
    """Frames side by side in rows of `columns`, each resized to `thumb` pixels wide."""
    thumbs = [np.asarray(Image.fromarray(f).resize((thumb, thumb * f.shape[0] // f.shape[1]))) for f in frames]
    height = thumbs[0].shape[0]
    rows = -(-len(thumbs) // columns)
    sheet = np.full((rows * height, min(columns, len(thumbs)) * thumb, 3), 255, dtype=np.uint8)
    for i, t in enumerate(thumbs):
        r, c = divmod(i, columns)
        sheet[r * height : (r + 1) * height, c * thumb : (c + 1) * thumb] = t
    return sheet
