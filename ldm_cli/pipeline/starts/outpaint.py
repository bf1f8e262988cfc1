"""Outpainting: grow the canvas by LEFT,TOP,RIGHT,BOTTOM pixels, fill the new border, mask it.

    mean   the border is the picture's mean colour plus Gaussian noise of the picture's own
           per-channel spread (a fixed pattern, so a seed re-makes the same image): the model
           sees "something is here, of this palette" and paints it
    edge   the border repeats the picture's outermost pixels outwards (edge stretch)

The mask is white over the border and, inside the original area, the user's --mask (or black).
"""

from __future__ import annotations

import numpy as np

FILLS = ("mean", "edge")
NOISE_SEED = 0


def parse_outpaint(text: str) -> tuple[int, int, int, int]:
    """'L,T,R,B' (or one number for all four sides) -> four non-negative multiples of 8."""
    from ldm_cli.errors import UsageError

    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 1:
        parts = parts * 4
    try:
        sides = tuple(int(p) for p in parts)
    except ValueError:
        sides = ()
    if len(sides) != 4:
        raise UsageError(f"--outpaint {text!r}: give LEFT,TOP,RIGHT,BOTTOM in pixels, e.g. --outpaint 0,0,64,0")
    if any(s < 0 or s % 8 for s in sides):
        raise UsageError(f"--outpaint {text}: each side must be a multiple of 8 pixels, 0 or more (e.g. 64,0,64,0)")
    if not any(sides):
        raise UsageError(f"--outpaint {text}: all four sides are 0, so nothing would grow; give at least one side")
    return sides  # type: ignore[return-value]


def grown_size(size: tuple[int, int], sides: tuple[int, int, int, int]) -> tuple[int, int]:
    left, top, right, bottom = sides
    return size[0] + left + right, size[1] + top + bottom


def grow(picture: np.ndarray, mask: np.ndarray | None, sides, fill: str) -> tuple[np.ndarray, np.ndarray]:
    """The bigger picture with its border filled, and the mask that repaints the border."""
    left, top, right, bottom = sides
    height, width = picture.shape[:2]
    pad = ((top, bottom), (left, right))
    if fill == "edge":
        canvas = np.pad(picture, (*pad, (0, 0)), mode="edge")
    else:
        canvas = _mean_and_noise(picture, (height + top + bottom, width + left + right))
        canvas[top : top + height, left : left + width] = picture
    inner = mask if mask is not None else np.zeros((height, width), np.uint8)
    grown_mask = np.pad(inner, pad, mode="constant", constant_values=255)
    return canvas, grown_mask


def _mean_and_noise(picture: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    pixels = picture.reshape(-1, 3).astype(np.float64)
    mean, spread = pixels.mean(axis=0), pixels.std(axis=0)
    noise = np.random.default_rng(NOISE_SEED).standard_normal((*shape, 3))
    return np.clip(np.round(mean + noise * spread), 0, 255).astype(np.uint8)


def original_area(size: tuple[int, int], sides) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the original picture inside the grown canvas."""
    left, top, right, bottom = sides
    width, height = size
    return left, top, width - right, height - bottom
