"""Metadata other tools write: A1111's JPEG/WebP EXIF UserComment and Fooocus' JSON record, read by
`ldm info` and `ldm generate --from` like an A1111 PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from ldm_cli.files.foreign_metadata import decode_user_comment
from ldm_cli.files.metadata import parse_a1111, read_png_metadata

INFOTEXT = ("a lighthouse, \u00e9t\u00e9 \u2014 dusk\nNegative prompt: blurry\n"
            "Steps: 3, Sampler: Euler a, CFG scale: 6, Seed: 1234, Size: 64x64, Model hash: 0123456789, Model: x")
FOOOCUS = {
    "adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion.safetensors",
    "base_model_hash": "aeb7e9e6897a1e58b10494bd989d001e3d4bc9b634633cd7b559838f612c2867",
    "full_negative_prompt": ["blurry", "(worst quality, low quality:1.4)"], "full_prompt": ["a lighthouse", "dusk, detailed"],
    "guidance_scale": 6.0, "loras": [["style.safetensors", 0.5, "4852686128"]], "negative_prompt": "blurry",
    "performance": "Speed", "prompt": "a lighthouse", "refiner_model": "None", "refiner_switch": 0.5,
    "resolution": "(64, 64)", "sampler": "euler_ancestral", "scheduler": "karras", "seed": "1234", "sharpness": 2.0,
    "steps": 3, "styles": "['Fooocus V2', 'Fooocus Enhance']", "vae": "Default (model)", "version": "Fooocus v2.5.5",
}


def _exif_image(path, fmt, comment, maker_note=None, in_exif_ifd=True):
    exif = Image.Exif()
    if in_exif_ifd:
        exif.get_ifd(0x8769)[0x9286] = comment
    else:
        exif[0x9286] = comment
    if maker_note:
        exif[0x927C] = maker_note
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(path, format=fmt, exif=exif)
    return path


def test_user_comment_charsets():
    assert decode_user_comment(b"UNICODE\0" + "été".encode("utf-16-be")) == "été"
    assert decode_user_comment(b"UNICODE\0" + "ab, cd".encode("utf-16-le")) == "ab, cd"
    assert decode_user_comment(b"UNICODE\0" + "\ufeffx".encode("utf-16-le")) == "x"
    assert decode_user_comment(b"ASCII\0\0\0plain\0") == "plain"
    assert decode_user_comment(b"\0" * 8 + "ü".encode()) == "ü"
    assert decode_user_comment("text") == "text" and decode_user_comment(None) is None


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("WEBP", "webp")])
def test_a1111_jpeg_and_webp_are_read(ldm, tmp_path, fmt, suffix):
    # piexif.helper.UserComment.dump(text, encoding="unicode"), as A1111 writes it
    path = _exif_image(tmp_path / f"a1111.{suffix}", fmt, b"UNICODE\0" + INFOTEXT.encode("utf-16-be"))
    assert read_png_metadata(path)["parameters"] == INFOTEXT
    result = ldm("info", path)
    assert result.code == 0 and "a lighthouse, été — dusk" in result.stdout and "Seed: 1234" in result.stdout


def test_generate_from_an_a1111_jpeg(ldm, tiny_model, tmp_path):
    _exif_image(tmp_path / "a.jpg", "JPEG", b"UNICODE\0" + INFOTEXT.encode("utf-16-be"))
    result = ldm("generate", "--from", "a.jpg", "--model", tiny_model, "--out", "o.png")
    assert result.code == 0, result.stderr
    ours = parse_a1111(Image.open(tmp_path / "o.png").text["parameters"])
    assert ours["prompt"] == "a lighthouse, été — dusk" and ours["negative_prompt"] == "blurry"
    assert ours["fields"]["Seed"] == "1234" and ours["fields"]["Steps"] == "3" and ours["fields"]["Sampler"] == "Euler a"
    assert "0123456789" in result.stderr  # recorded with another model: said so


def _fooocus_png(path, scheme="fooocus"):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", json.dumps(FOOOCUS))
    info.add_text("fooocus_scheme", scheme)
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(path, pnginfo=info)
    return path


def test_a_fooocus_png_reads_as_an_infotext(tmp_path):
    chunks = read_png_metadata(_fooocus_png(tmp_path / "f.png"))
    assert chunks["fooocus"]["seed"] == "1234"
    parsed = parse_a1111(chunks["parameters"])
    assert parsed["prompt"] == "a lighthouse <lora:style:0.5>" and parsed["negative_prompt"] == "blurry"
    fields = parsed["fields"]
    assert (fields["Steps"], fields["CFG scale"], fields["Seed"], fields["Size"]) == ("3", "6.0", "1234", "64x64")
    assert fields["Sampler"] == "Euler a"  # euler_ancestral: Fooocus adds no " Karras" to it
    assert fields["Model hash"] == FOOOCUS["base_model_hash"][:10]


def test_generate_from_a_fooocus_png(ldm, tiny_model, tmp_path):
    _fooocus_png(tmp_path / "f.png")
    result = ldm("generate", "--from", "f.png", "--model", tiny_model, "--out", "o.png")
    assert result.code == 0, result.stderr
    assert "the prompt is empty" not in result.stderr
    ignored = [line for line in result.stderr.splitlines() if "Fooocus settings" in line]
    assert len(ignored) == 1 and "styles" in ignored[0] and "sharpness" in ignored[0] and "vae" not in ignored[0]
    assert "style" in result.stderr and "not found" in result.stderr  # its LoRA, named, not dropped silently
    ours = parse_a1111(Image.open(tmp_path / "o.png").text["parameters"])
    assert ours["prompt"] == "a lighthouse <lora:style:0.5>" and ours["negative_prompt"] == "blurry"
    assert ours["fields"]["Seed"] == "1234" and ours["fields"]["Steps"] == "3" and ours["fields"]["CFG scale"] == "6.0"
    assert ours["fields"]["Sampler"] == "Euler a"


def test_a_fooocus_jpeg_with_its_json_in_ifd0(ldm, tmp_path):
    path = _exif_image(tmp_path / "f.jpg", "JPEG", json.dumps(FOOOCUS), maker_note="fooocus", in_exif_ifd=False)
    chunks = read_png_metadata(path)
    assert chunks["fooocus"] is not None and parse_a1111(chunks["parameters"])["fields"]["Seed"] == "1234"
    result = ldm("info", path)
    assert result.code == 0 and "Seed: 1234" in result.stdout


def test_fooocus_in_a1111_scheme_is_plain_a1111(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", INFOTEXT)
    info.add_text("fooocus_scheme", "a1111")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "f.png", pnginfo=info)
    assert read_png_metadata(tmp_path / "f.png") == {"ldm": None, "parameters": INFOTEXT, "fooocus": None}


def _piexif_style_exif(text: str) -> bytes:
    """The EXIF block piexif.dump writes for {"Exif": {UserComment: ...}}: big-endian TIFF, IFD0 with
    an ExifIFD pointer, the Exif IFD with one UNDEFINED UserComment (built by hand: piexif is not a dependency)."""
    import struct

    comment = b"UNICODE\0" + text.encode("utf-16-be")
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x9286, 7, len(comment), 44) + struct.pack(">I", 0)
    tiff = b"MM\0*" + struct.pack(">I", 8) + ifd0 + exif_ifd + comment
    assert len(b"MM\0*" + struct.pack(">I", 8) + ifd0) == 26 and len(tiff) - len(comment) == 44
    return b"Exif\0\0" + tiff


def test_a_big_endian_exif_block_as_piexif_writes_it(tmp_path):
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "p.jpg", exif=_piexif_style_exif(INFOTEXT))
    assert read_png_metadata(tmp_path / "p.jpg")["parameters"] == INFOTEXT
