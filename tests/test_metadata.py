"""The A1111 `parameters` format: written as the ecosystem writes it, and read back (ours and theirs)."""

from __future__ import annotations

import numpy as np
from PIL import Image, PngImagePlugin

from ldm_cli.files.metadata import a1111_parameters, parse_a1111

A1111_SAMPLE = (
    "a scarlet macaw, detailed\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, Size: 64x64, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.9.4'
)


def test_round_trip_with_values_that_need_quoting():
    text = a1111_parameters("a cat,\nsecond line", "ugly, blurry",
                            {"Steps": 50, "Sampler": "DPM++ 2M Karras", "CFG scale": 7.5, "Seed": 42,
                             "Model": "my: model, v2", "Empty": ""})
    assert text.splitlines()[-1].startswith("Steps: 50, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Model: \"my")
    assert "Empty" not in text
    parsed = parse_a1111(text)
    assert parsed["prompt"] == "a cat,\nsecond line"
    assert parsed["negative_prompt"] == "ugly, blurry"
    assert parsed["fields"]["Model"] == "my: model, v2" and parsed["fields"]["Seed"] == "42"


def test_parses_an_a1111_line():
    parsed = parse_a1111(A1111_SAMPLE)
    assert parsed["prompt"] == "a scarlet macaw, detailed"
    assert parsed["negative_prompt"] == "blurry, lowres"
    assert parsed["fields"]["Sampler"] == "Euler a"
    assert parsed["fields"]["Lora hashes"] == "add_detail: 7c6bad76eb54"


def test_prompt_only_text_is_not_mistaken_for_parameters():
    parsed = parse_a1111("just a prompt: with a colon")
    assert parsed == {"prompt": "just a prompt: with a colon", "negative_prompt": "", "fields": {}}


def test_generate_from_an_a1111_png(ldm, tiny_model, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_SAMPLE)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "theirs.png", pnginfo=info)
    result = ldm("generate", "--from", "theirs.png", "--model", tiny_model, "--steps", "2", "--json", "--out", "ours.png")
    assert result.code == 0, result.stderr
    ours = parse_a1111(Image.open(tmp_path / "ours.png").text["parameters"])
    assert ours["prompt"] == "a scarlet macaw, detailed" and ours["negative_prompt"] == "blurry, lowres"
    assert ours["fields"]["Sampler"] == "Euler a" and ours["fields"]["Seed"] == "1234"
    assert ours["fields"]["CFG scale"] == "7.0" and ours["fields"]["Steps"] == "2"


def test_from_a_png_without_metadata_is_a_usage_error(ldm, tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "plain.png")
    result = ldm("generate", "--from", "plain.png")
    assert result.code == 2 and "no ldm or A1111 generation metadata" in result.stderr
