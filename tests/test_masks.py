"""Mask files and the A1111 mask operations, on real files and arrays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ldm_cli.errors import UsageError
from ldm_cli.files.masks import load_mask
from ldm_cli.pipeline.starts import mask_ops


def test_grey_masks_are_thresholded_at_one_half_as_diffusers_binarizes(tmp_path):
    grey = np.array([[0, 127, 128, 255]], np.uint8).repeat(4, axis=0)
    Image.fromarray(grey).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (4, 4))
    assert mask.binary[0].tolist() == [False, False, True, True] and not mask.notes
    Image.fromarray(np.stack([grey] * 3, axis=2)).save(tmp_path / "rgb.png")  # an RGB mask: its luminance
    assert load_mask(tmp_path / "rgb.png", (4, 4)).binary[0].tolist() == [False, False, True, True]


def test_a_transparent_layer_with_white_strokes_keeps_its_transparent_pixels(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 255  # transparent pixels that hide white must still be kept
    rgba[2:6, 2:6, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "strokes.png")
    mask = load_mask(tmp_path / "strokes.png", (8, 8))
    assert mask.binary.sum() == 16 and mask.binary[2:6, 2:6].all()
    assert "transparency" in mask.notes[0]


def test_a_mask_of_another_size_is_resized_with_a_note(tmp_path):
    big = np.zeros((32, 32), np.uint8)
    big[:, 16:] = 255
    Image.fromarray(big).save(tmp_path / "big.png")
    mask = load_mask(tmp_path / "big.png", (16, 8))
    assert mask.grey.shape == (8, 16) and mask.binary[:, 9:].all() and not mask.binary[:, :7].any()
    assert "resized the mask from 32x32 to the picture's 16x8" in mask.notes[0]


def test_a_file_that_is_not_an_image_is_a_usage_error_naming_the_flag(tmp_path):
    (tmp_path / "m.png").write_text("hello")
    with pytest.raises(UsageError, match=r"--mask .*m\.png.*the mask must be an image"):
        load_mask(tmp_path / "m.png", (8, 8))


def test_blur_uses_a1111s_kernel_and_keeps_far_pixels():
    mask = np.zeros((60, 60), np.uint8)
    mask[20:40, 20:40] = 255
    blurred = mask_ops.gaussian_blur(mask, 4)
    radius = int(2.5 * 4 + 0.5)  # kernel 2 * 10 + 1: nothing moves farther than 10 pixels
    assert blurred[: 20 - radius].max() == 0 and blurred[20 - radius : 20].max() > 0
    assert blurred[30, 30] >= 250 and 100 < blurred[30, 20] < 155  # the edge sits near one half
    assert np.abs(blurred.astype(int) - blurred.T).max() <= 1 and np.array_equal(mask_ops.gaussian_blur(mask, 0), mask)


def test_overlay_doubles_the_blur_for_the_whole_picture_only():
    blurred = np.array([[0, 64, 127, 200]], np.uint8)
    assert mask_ops.overlay_mask(blurred, only_masked=False).tolist() == [[0, 128, 254, 255]]
    assert mask_ops.overlay_mask(blurred, only_masked=True).tolist() == blurred.tolist()


def test_composite_is_exact_where_the_overlay_is_zero():
    picture = np.full((2, 2, 3), 10, np.uint8)
    result = np.full((2, 2, 3), 250, np.uint8)
    overlay = np.array([[0, 255], [128, 1]], np.uint8)
    out = mask_ops.composite(picture, result, overlay)
    assert out[0, 0].tolist() == [10] * 3 and out[0, 1].tolist() == [250] * 3
    assert out[1, 0, 0] == round(250 * 128 / 255 + 10 * 127 / 255)


def test_crop_box_grows_to_the_working_aspect_ratio_as_a1111():
    mask = np.zeros((512, 512), np.uint8)
    mask[100:132, 200:328] = 255  # a 128x32 stroke, A1111's docstring example
    assert mask_ops.crop_box(mask, 0, 512, 512) == (200, 52, 328, 180)  # 128x128
    assert mask_ops.crop_box(mask, 16, 1, 1) == (184, 36, 344, 196)
    corner = np.zeros((64, 64), np.uint8)
    corner[0:4, 40:64] = 255  # grown past the edge: shifted back inside
    assert mask_ops.crop_box(corner, 0, 1, 1) == (40, 0, 64, 24)


def test_fill_replaces_the_masked_pixels_with_the_surrounding_colours():
    picture = np.zeros((32, 32, 3), np.uint8)
    picture[:] = [200, 30, 30]
    picture[8:24, 8:24] = [0, 255, 0]  # what the mask hides
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    filled = mask_ops.blur_fill(picture, mask)
    assert np.array_equal(filled[mask == 0], picture[mask == 0])
    assert np.abs(filled[16, 16].astype(int) - [200, 30, 30]).max() <= 3
