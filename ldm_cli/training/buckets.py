"""Aspect-ratio buckets and the image transform (resize to cover, crop, flip).

With buckets, a 3:4 portrait trains at e.g. 448x576 instead of being cropped to a square:
every bucket has sides that are multiples of 64 and about the area of resolution x resolution.
Without buckets every image is resized and cropped to resolution x resolution.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

STEP = 64
MAX_RATIO = 2.0  # the widest bucket is 2:1, the tallest 1:2


def bucket_sizes(resolution: int, use_buckets: bool = True) -> list[tuple[int, int]]:
    """(width, height) pairs, multiples of 64, with area <= resolution^2 and aspect within 1:2..2:1."""
    if not use_buckets or resolution < 2 * STEP:
        return [(resolution, resolution)]
    area = resolution * resolution
    sizes = {(resolution, resolution)}
    for width in range(STEP, int(resolution * math.sqrt(MAX_RATIO)) + STEP, STEP):
        height = (area // width) // STEP * STEP
        if height >= STEP and max(width / height, height / width) <= MAX_RATIO:
            sizes.add((width, height))
            sizes.add((height, width))
    return sorted(sizes)


def nearest_bucket(width: int, height: int, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest (in log space) to the image's."""
    ratio = math.log(width / height)
    return min(sizes, key=lambda s: (abs(math.log(s[0] / s[1]) - ratio), -s[0] * s[1]))


def aspect_label(size: tuple[int, int]) -> str:
    width, height = size
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor} ({width}x{height})"


def crop_box(width: int, height: int, target: tuple[int, int], offset: tuple[float, float] = (0.5, 0.5)):
    """Resize-to-cover size and the crop box for `target`; offset (0..1, 0..1) picks where to crop."""
    target_w, target_h = target
    scale = max(target_w / width, target_h / height)
    resized = (max(target_w, round(width * scale)), max(target_h, round(height * scale)))
    left = round((resized[0] - target_w) * offset[0])
    top = round((resized[1] - target_h) * offset[1])
    return resized, (left, top, left + target_w, top + target_h)


def prepare_pixels(image: Image.Image, target: tuple[int, int], offset=(0.5, 0.5), flip: bool = False) -> np.ndarray:
    """RGB image -> [3, H, W] float32 in [-1, 1] at the bucket size."""
    resized, box = crop_box(image.width, image.height, target, offset)
    image = image.convert("RGB").resize(resized, Image.Resampling.BICUBIC).crop(box)
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0  # [H, W, 3]
    return array.transpose(2, 0, 1).copy()
