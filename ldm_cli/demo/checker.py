"""Look at a demo picture's pixels and say what is in it: colours, shape, size.

    background  the palette colour nearest to the median of the image border
    foreground  pixels far from the background colour form the shape mask (largest part kept);
                its colour is the palette colour nearest to the mask's median
    shape       from the mask's geometry: fill ratio of its bounding box and how the width
                grows from top to bottom
                  square   fills its box (~1.0)
                  circle   ~pi/4 = 0.79, symmetric top/bottom
                  cross    ~5/9 = 0.56, narrow at the top and the bottom, full width in the middle
                  triangle ~0.5, narrow at the top, wide at the bottom
    size        the box side relative to the image: small ~0.42, large ~0.72

Pure numpy; works on [H, W, 3] uint8 arrays of any size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ldm_cli.demo.shapes import PALETTE, SIZE_FRACTION

_NAMES = list(PALETTE)
_RGB = np.array([PALETTE[n] for n in _NAMES], dtype=np.float32)
FOREGROUND_DISTANCE = 90.0  # RGB distance from the background that counts as shape


@dataclass(frozen=True)
class Reading:
    background: str | None
    colour: str | None
    shape: str | None
    size: str | None
    fill: float = 0.0
    taper: float = 0.0
    extent: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def nearest_colour(rgb) -> str:
    return _NAMES[int(np.argmin(((_RGB - np.asarray(rgb, dtype=np.float32)) ** 2).sum(axis=1)))]


def read_image(pixels: np.ndarray) -> Reading:
    """Classify one image [H, W, 3] uint8."""
    pixels = np.asarray(pixels, dtype=np.float32)
    background, mask = _background_and_mask(pixels)
    if mask.sum() < 0.01 * mask.size:
        return Reading(background, None, None, None)
    colour = nearest_colour(np.median(pixels[mask], axis=0))
    shape, fill, taper, extent = _shape(mask)
    return Reading(background, colour, shape, _size(extent), fill, taper, extent)


def shape_mask(pixels: np.ndarray) -> np.ndarray:
    """The drawn shape's pixels [H, W] bool, as read_image finds them (largest part far from the background)."""
    return _background_and_mask(np.asarray(pixels, dtype=np.float32))[1]


def _background_and_mask(pixels: np.ndarray) -> tuple[str, np.ndarray]:
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = nearest_colour(np.median(border, axis=0))
    distance = np.sqrt(((pixels - _RGB[_NAMES.index(background)]) ** 2).sum(axis=2))
    return background, _largest_component(distance > FOREGROUND_DISTANCE)


def _shape(mask: np.ndarray) -> tuple[str, float, float, float]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = box.shape
    fill = float(box.mean())
    widths = box.sum(axis=1).astype(np.float32)
    quarter = max(1, height // 4)
    top, middle, bottom = widths[:quarter].mean(), widths[height // 2 - quarter // 2 : height // 2 + quarter // 2 + 1].mean(), widths[-quarter:].mean()
    taper = float(top / max(bottom, 1.0))  # triangle << 1, symmetric shapes ~ 1
    extent = max(height, width) / mask.shape[0]
    if taper < 0.6 and bottom > 0.6 * width:
        shape = "triangle"
    elif fill > 0.9:
        shape = "square"
    elif fill > 0.68:
        shape = "circle"
    elif middle > 0.8 * width and top < 0.6 * width:
        shape = "cross"
    else:
        shape = "unknown"
    return shape, fill, taper, float(extent)


def _size(extent: float) -> str:
    threshold = (SIZE_FRACTION["small"] + SIZE_FRACTION["large"]) / 2
    return "large" if extent >= threshold else "small"


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask (drops specks the sampler leaves)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def agrees(reading: Reading, expected: dict) -> dict[str, bool]:
    """Per attribute: does the reading match what the prompt asked for (only attributes it names)?"""
    return {key: getattr(reading, key) == value for key, value in expected.items() if value is not None}
