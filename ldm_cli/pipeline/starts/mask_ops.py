"""Pixel-space mask operations as A1111's img2img does them (modules/processing.py, masking.py),
written for numpy. Masks are [H, W] uint8 (255 = repaint); pictures [H, W, 3] uint8.

    blur        separable Gaussian, sigma = N, kernel 2 * int(2.5 N + 0.5) + 1, mirrored border
    overlay     the mask that composites the result over the picture: the blurred mask doubled
                (whole picture: the feather grows outwards, the mask itself is fully repainted)
                or as blurred ("only masked")
    crop box    the masked pixels' bounding box plus padding, grown to the working aspect ratio
    fill        masked pixels replaced by blurred colours of the kept ones ("Masked content: fill")
"""

from __future__ import annotations

import numpy as np


def gaussian_blur(mask: np.ndarray, sigma: int) -> np.ndarray:
    """Blur along x, then along y, each with A1111's kernel size for `sigma` (cv2.GaussianBlur's)."""
    if sigma <= 0:
        return mask
    size = 2 * int(2.5 * sigma + 0.5) + 1
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    out = mask.astype(np.float64)
    for axis in (1, 0):
        out = _convolve_axis(out, kernel, axis)
        out = np.clip(np.round(out), 0, 255)  # cv2 rounds to uint8 after each pass
    return out.astype(np.uint8)


def _convolve_axis(array: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    radius = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(array, pad, mode="reflect" if array.shape[axis] > 1 else "edge")  # cv2's BORDER_REFLECT_101
    out = np.zeros_like(array)
    length = array.shape[axis]
    for i, weight in enumerate(kernel):
        out += weight * (padded[:, i : i + length] if axis == 1 else padded[i : i + length])
    return out


def overlay_mask(blurred: np.ndarray, only_masked: bool) -> np.ndarray:
    """How much of the result shows at each pixel (255 = all of it), A1111's mask_for_overlay."""
    if only_masked:
        return blurred
    return np.clip(blurred.astype(np.float32) * 2, 0, 255).astype(np.uint8)


def composite(picture: np.ndarray, result: np.ndarray, overlay: np.ndarray) -> np.ndarray:
    """The result over the picture through `overlay`: where it is 0 the picture's pixels, exactly."""
    alpha = overlay.astype(np.float32)[..., None] / 255.0
    mixed = np.round(result.astype(np.float32) * alpha + picture.astype(np.float32) * (1.0 - alpha))
    out = mixed.astype(np.uint8)
    keep = overlay == 0
    out[keep] = picture[keep]
    return out


def crop_box(mask: np.ndarray, padding: int, work_width: int, work_height: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2): the masked pixels' box plus `padding`, grown to work_width:work_height."""
    height, width = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x1, y1 = max(int(cols[0]) - padding, 0), max(int(rows[0]) - padding, 0)
    x2, y2 = min(int(cols[-1]) + 1 + padding, width), min(int(rows[-1]) + 1 + padding, height)
    if (x2 - x1) / (y2 - y1) > work_width / work_height:
        y1, y2 = _grow(y1, y2, int((x2 - x1) * work_height / work_width - (y2 - y1)), height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * work_width / work_height - (x2 - x1)), width)
    return x1, y1, x2, y2


def _grow(low: int, high: int, extra: int, limit: int) -> tuple[int, int]:
    """Widen [low, high) by `extra`, half on each side, shifted back inside [0, limit)."""
    low -= extra // 2
    high += extra - extra // 2
    if high > limit:
        low -= high - limit
        high = limit
    if low < 0:
        high -= low
        low = 0
    return low, min(high, limit)


def blur_fill(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked pixels -> the kept colours smeared in by ever smaller blurs (A1111 masking.fill)."""
    from PIL import Image, ImageFilter

    keep = (255 - mask).astype(np.float32)[..., None] / 255.0
    premultiplied = np.concatenate([picture.astype(np.float32) * keep, keep * 255.0], axis=2)
    canvas = np.zeros_like(premultiplied)  # premultiplied RGBA, starts transparent
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        layer = _blur_rgba(premultiplied, radius, Image, ImageFilter)
        for _ in range(repeats):
            alpha = layer[..., 3:] / 255.0
            canvas = layer + canvas * (1.0 - alpha)  # "over" in premultiplied space
    alpha = np.maximum(canvas[..., 3:], 1e-6) / 255.0
    colour = np.clip(np.round(canvas[..., :3] / alpha), 0, 255).astype(np.uint8)
    return np.where(mask[..., None] >= 128, colour, picture)


def _blur_rgba(premultiplied: np.ndarray, radius: int, Image, ImageFilter) -> np.ndarray:
    if radius == 0:
        return premultiplied
    channels = [Image.fromarray(np.clip(np.round(premultiplied[..., c]), 0, 255).astype(np.uint8)) for c in range(4)]
    return np.stack([np.asarray(c.filter(ImageFilter.GaussianBlur(radius)), np.float32) for c in channels], axis=2)
