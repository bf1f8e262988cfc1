"""Reading an inpainting mask: white = repaint, black = keep.

    open       any image ldm reads (image_io's checks and messages), EXIF orientation applied
    grey       luminance, as diffusers' mask processor converts it (PIL "L"); a mask with real
               transparency is taken as painted strokes on a transparent layer: grey x alpha, so
               transparent pixels keep the picture whatever colour they hide
    size       a mask of another size than the picture is resized to it (Lanczos, as diffusers),
               with a note
    threshold  >= 0.5 repaints (diffusers' do_binarize), done by the caller on `grey`

A mask the user got wrong is a usage error (exit 2): it names the flag and the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import InputFileError, UsageError


@dataclass
class LoadedMask:
    path: Path
    grey: object  # np.ndarray [H, W] uint8, at the picture's size, before thresholding
    sha256: str
    notes: list[str] = field(default_factory=list)

    @property
    def binary(self):
        """[H, W] bool: True where the picture is repainted (grey / 255 >= 0.5, diffusers' binarize)."""
        return self.grey >= 128


def load_mask(path: Path, size: tuple[int, int], flag: str = "--mask") -> LoadedMask:
    """Read the mask file and bring it to `size` (width, height) of the picture."""
    import numpy as np
    from PIL import Image

    from ldm_cli.files import image_io

    path = Path(path)
    try:
        data = image_io._read_bytes(path)
        notes: list[str] = []
        image, _, _ = image_io._decode(path, data, notes)
    except InputFileError as exc:
        raise UsageError(f"{flag} {exc}; the mask must be an image (white = repaint, black = keep)") from None
    grey = _grey(image, notes)
    if grey.size != size:
        notes.append(f"resized the mask from {grey.size[0]}x{grey.size[1]} to the picture's {size[0]}x{size[1]}")
        grey = grey.resize(size, Image.Resampling.LANCZOS)
    return LoadedMask(path, np.asarray(grey, dtype=np.uint8), hashlib.sha256(data).hexdigest(), notes)


def _grey(image, notes: list[str]):
    """Any mode -> 8-bit luminance; real transparency multiplies it (transparent = keep)."""
    from PIL import Image, ImageChops

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        from ldm_cli.files.image_io import _high_depth_to_l

        return _high_depth_to_l(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 255:
            notes.append("used the mask's transparency: transparent pixels are kept")
            return ImageChops.multiply(rgba.convert("RGB").convert("L"), alpha)
        return rgba.convert("RGB").convert("L")
    return image.convert("L") if image.mode != "L" else image
