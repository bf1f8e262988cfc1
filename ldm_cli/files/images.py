"""Writing images: PNG with text chunks, atomically, never over an existing file."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, PngImagePlugin

from ldm_cli.errors import as_os_error, write_error
from ldm_cli.files.modes import give_normal_mode


def slugify(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "image"


def free_path(path: Path, suffix: str | None = None) -> Path:
    """`path` if nothing is there, else the first of name-2.png, name-3.png, ... that is free.

    `suffix` names a multi-part ending to keep whole (".latent.safetensors")."""
    if not path.exists():
        return path
    suffix = suffix if suffix and path.name.endswith(suffix) else path.suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    n = 2
    while (candidate := path.with_name(f"{stem}-{n}{suffix}")).exists():
        n += 1
    return candidate


def write_new_file(wanted: Path, write: Callable[[Path], None], suffix: str | None = None) -> Path:
    """Write through `write(tmp_path)` to a temporary file beside `wanted`, then hard-link it to
    `wanted` or the next free name. An interrupted write leaves no partial file, and a file that
    appeared meanwhile is never replaced. Returns the path actually written; a disk that is full
    or read-only raises OutputError naming `wanted`."""
    try:
        wanted.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(wanted.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{PART_PREFIX}{os.getpid()}-", suffix=".part", dir=wanted.parent)
    except OSError as exc:
        raise write_error(exc, wanted) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        give_normal_mode(tmp)  # mkstemp made it 0600; the published file gets 0666 & ~umask
        while True:
            target = free_path(wanted, suffix)
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                continue  # the name was taken between the check and the link: try the next one
    except Exception as exc:  # noqa: BLE001 - PIL and safetensors wrap the OS error in their own types
        cause = as_os_error(exc)
        if cause is None:
            raise
        raise write_error(cause, wanted) from None
    finally:
        tmp.unlink(missing_ok=True)


PART_PREFIX = ".ldm-"


def remove_stale_parts(folder: Path) -> None:
    """Delete `.ldm-<pid>-*.part` files whose process is gone (a kill -9 during a write leaves one)."""
    for part in folder.glob(f"{PART_PREFIX}*-*.part"):
        pid = part.name[len(PART_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            part.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return True
    return True


def _png_info(text: dict[str, str] | None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    return info


def save_png(pixels: np.ndarray, path: Path, text: dict[str, str] | None = None) -> Path:
    """Write [H,W,3] uint8 as a PNG with text chunks to `path` (or the next free name)."""
    info = _png_info(text)
    return write_new_file(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG", pnginfo=info))


def png_bytes(pixels: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """The same PNG as save_png writes, in memory (for `ldm serve` responses)."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=_png_info(text))
    return buffer.getvalue()


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
