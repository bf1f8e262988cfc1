"""Robust image loading: orientation, colour modes, bit depths, formats, refusals, size policy."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ldm_cli.errors import InputFileError, UsageError
from ldm_cli.files.image_io import SizePolicy, expand_inputs, load_image, to_tensor


def halves(width=40, height=24):
    """Left half red, right half blue: orientation is visible in the result."""
    x = np.zeros((height, width, 3), np.uint8)
    x[:, : width // 2] = [255, 0, 0]
    x[:, width // 2 :] = [0, 0, 255]
    return x


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(halves()).save(tmp_path / "phone.jpg", quality=95, subsampling=0, exif=exif.tobytes())
    loaded = load_image(tmp_path / "phone.jpg")
    assert loaded.size == (24, 40) and loaded.original_size == (40, 24)
    expected = np.rot90(halves(), k=-1)  # clockwise: red (left) ends up on top
    assert np.abs(loaded.pixels.astype(int) - expected).max() < 40
    assert "EXIF orientation" in loaded.describe()


def test_rgba_is_composited_onto_white(tmp_path):
    x = np.zeros((16, 16, 4), np.uint8)
    x[:8] = [255, 0, 0, 128]  # half-transparent red
    x[8:] = [0, 0, 0, 0]  # fully transparent black
    Image.fromarray(x, "RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape == (16, 16, 3)
    assert np.abs(loaded.pixels[0, 0].astype(int) - [255, 127, 127]).max() <= 1
    assert (loaded.pixels[12, 12] == 255).all()  # transparent -> white, not black
    assert "transparency onto white" in loaded.describe()


def test_grayscale_alpha_and_palette_transparency(tmp_path):
    Image.fromarray(np.stack([np.full((8, 8), 100, np.uint8), np.zeros((8, 8), np.uint8)], -1), "LA").save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png").pixels == 255).all()
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.save(tmp_path / "p.png", transparency=0)
    assert (load_image(tmp_path / "p.png").pixels == [10, 200, 30]).all()
    palette.save(tmp_path / "p-clear.png", transparency=1)
    assert (load_image(tmp_path / "p-clear.png").pixels == 255).all()


def test_grayscale_becomes_three_equal_channels(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L").save(tmp_path / "g.png")
    pixels = load_image(tmp_path / "g.png").pixels
    assert pixels.shape == (8, 8, 3) and (pixels[..., 0] == pixels[..., 2]).all() and pixels[7, 7, 1] == 252


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 128, 65535, 257 * 64]] * 8, np.uint16).repeat(2, axis=1)  # 8x8
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    loaded = load_image(tmp_path / "deep.png")
    assert list(loaded.pixels[0, ::2, 0]) == [0, 128, 255, 64]
    assert "16-bit" in loaded.describe()


def test_cmyk_becomes_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cyan.tif")
    loaded = load_image(tmp_path / "cyan.tif")
    assert (loaded.pixels == [0, 255, 255]).all() and "CMYK" in loaded.describe()


@pytest.mark.parametrize("suffix,options", [
    (".png", {}), (".jpg", {"quality": 100, "subsampling": 0}), (".webp", {"lossless": True}), (".bmp", {}), (".tiff", {}),
])
def test_every_supported_format_loads(tmp_path, suffix, options):
    Image.fromarray(halves(32, 16)).save(tmp_path / f"x{suffix}", **options)
    loaded = load_image(tmp_path / f"x{suffix}")
    assert loaded.size == (32, 16)
    assert np.abs(loaded.pixels.astype(int) - halves(32, 16)).max() < 30


def test_unsupported_format_is_refused_by_name(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "anim.gif")
    with pytest.raises(InputFileError, match=r"anim\.gif: GIF images are not supported"):
        load_image(tmp_path / "anim.gif")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, valid-CRC PNG whose header claims width x height pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(9000, 9000), (30000, 30000)])
def test_decompression_bomb_is_refused(tmp_path, size):
    (tmp_path / "bomb.png").write_bytes(_png_claiming(*size))
    with pytest.raises(InputFileError, match=r"bomb\.png: refusing a possible decompression bomb"):
        load_image(tmp_path / "bomb.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_is_refused_by_name(tmp_path, suffix):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / f"full{suffix}")
    data = (tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=rf"cut\{suffix}: the image data is truncated or corrupt"):
        load_image(tmp_path / f"cut{suffix}")


def test_corrupt_empty_and_missing_files(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"junk\.png: not an image file or corrupt"):
        load_image(tmp_path / "junk.png")
    with pytest.raises(InputFileError, match=r"empty\.jpg: the file is empty"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(InputFileError, match=r"nope\.png: no such file"):
        load_image(tmp_path / "nope.png")


def test_default_size_rounds_down_to_a_multiple_of_8_and_says_so(tmp_path):
    x = np.arange(70 * 100 * 3, dtype=np.uint32).reshape(70, 100, 3).astype(np.uint8)
    Image.fromarray(x).save(tmp_path / "odd.png")
    loaded = load_image(tmp_path / "odd.png")
    assert loaded.size == (96, 64)
    assert (loaded.pixels == x[3:67, 2:98]).all()  # centred crop, pixels untouched
    assert loaded.notes == ["cropped 100x70 to 96x64 (a multiple of 8), centred"]
    Image.fromarray(x[:64, :96]).save(tmp_path / "even.png")
    assert load_image(tmp_path / "even.png").notes == []
    Image.new("RGB", (5, 20)).save(tmp_path / "thin.png")
    with pytest.raises(InputFileError, match="too small"):
        load_image(tmp_path / "thin.png")


def test_resize_modes(tmp_path):
    Image.new("RGB", (100, 50), (0, 0, 0)).save(tmp_path / "wide.png")
    path = tmp_path / "wide.png"
    crop = load_image(path, SizePolicy(64, 64, "crop"))
    pad = load_image(path, SizePolicy(64, 64, "pad"))
    stretch = load_image(path, SizePolicy(64, 64, "stretch"))
    assert crop.size == pad.size == stretch.size == (64, 64)
    assert (crop.pixels == 0).all() and (stretch.pixels == 0).all()  # no borders added
    assert (pad.pixels[0] == 255).all() and (pad.pixels[32] == 0).all()  # white bands above and below
    assert pad.notes == ["resized 100x50 to 64x64 by pad"]
    only_width = load_image(path, SizePolicy(width=64))
    assert only_width.size == (64, 32)  # the height follows the aspect ratio, to a multiple of 8


def test_policy_validation_and_folder_expansion(tmp_path):
    with pytest.raises(UsageError, match="--resize 'squash'"):
        SizePolicy(resize="squash").validate()
    with pytest.raises(UsageError, match="--height 30"):
        SizePolicy(height=30).validate()
    (tmp_path / "imgs").mkdir()
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / "imgs" / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs([tmp_path / "imgs"])] == ["a.jpg", "b.png"]
    (tmp_path / "none").mkdir()
    with pytest.raises(InputFileError, match="no images in this folder"):
        expand_inputs([tmp_path / "none"])


def test_to_tensor_range_and_layout():
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[..., 1] = 255
    t = to_tensor(pixels)
    assert tuple(t.shape) == (1, 3, 8, 16)
    assert float(t[0, 0].max()) == -1.0 and float(t[0, 1].min()) == 1.0
