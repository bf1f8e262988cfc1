"""The demo world's inpainting example: a flat blue picture and a mask over its centre.

    python -m ldm_cli.demo.inpaint_scene docs/inpaint      # writes before.png and mask.png there
    ldm generate "a red circle" --model demo --init-image docs/inpaint/before.png \\
        --mask docs/inpaint/mask.png --seed 1 --steps 20 --out docs/inpaint/after.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ldm_cli.demo.shapes import PALETTE, SIZE

MASK_BOX = (SIZE // 4, SIZE // 4, 3 * SIZE // 4, 3 * SIZE // 4)  # x1, y1, x2, y2: the centre half


def scene() -> tuple[np.ndarray, np.ndarray]:
    """([SIZE, SIZE, 3] uint8 flat blue, [SIZE, SIZE] uint8 mask: 255 over the centre)."""
    picture = np.empty((SIZE, SIZE, 3), np.uint8)
    picture[:] = PALETTE["blue"]
    mask = np.zeros((SIZE, SIZE), np.uint8)
    x1, y1, x2, y2 = MASK_BOX
    mask[y1:y2, x1:x2] = 255
    return picture, mask


def write_scene(folder: Path) -> tuple[Path, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    picture, mask = scene()
    Image.fromarray(picture).save(folder / "before.png")
    Image.fromarray(mask).save(folder / "mask.png")
    return folder / "before.png", folder / "mask.png"


if __name__ == "__main__":
    for path in write_scene(Path(sys.argv[1] if len(sys.argv) > 1 else "inpaint")):
        print(path)
