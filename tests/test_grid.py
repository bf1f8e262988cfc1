"""`ldm grid`: each cell is the single `ldm generate` with that cell's settings; one labelled sheet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_cli.errors import UsageError
from ldm_cli.pipeline.grid import apply, cells, parse_axis


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_axis_values_ranges_and_quotes():
    assert parse_axis("--x", "steps=10,20").values == (10, 20)
    assert parse_axis("--x", "steps=1-9 (+4)").values == (1, 5, 9)
    assert parse_axis("--x", "g=1-2 [3]").values == (1.0, 1.5, 2.0)
    assert parse_axis("--x", 'prompt=red,"blue, green"').values == ("red", "blue, green")
    assert parse_axis("--x", "sampler=Euler a,DPM++ 2M").key.name == "scheduler"
    for bad in ("steps", "colour=1,2", "steps=a,b", "prompt=red", "steps="):
        with pytest.raises(UsageError):
            parse_axis("--x", bad)


def test_prompt_search_replace_and_cell_order():
    axis = parse_axis("--y", "prompt=red,blue")
    assert apply({"prompt": "a red fox", "negative_prompt": "red eyes"}, axis, "blue") == {
        "prompt": "a blue fox", "negative_prompt": "blue eyes"}
    assert cells([parse_axis("--x", "steps=1,2"), None, parse_axis("--z", "seed=1,2")]) == [
        (0, 0, 0), (1, 0, 0), (0, 0, 1), (1, 0, 1)]


def test_every_cell_equals_the_single_generate(ldm, tiny_model, tmp_path):
    result = ldm("grid", "a red fox", "--model", tiny_model, "--seed", "3", "--g", "5", "--scheduler", "euler-a",
                 "--x", "steps=2,3", "--y", "prompt=red,blue", "--z", "clip-skip=1,2", "--out", "g")
    assert result.code == 0, result.stderr
    sheet = Image.open(tmp_path / "g" / "sheet.png")
    assert sheet.size[0] > 2 * 64 and sheet.size[1] > 4 * 64  # labels around 2 x 2 x 2 cells
    for (x, steps), (y, word), (z, skip) in [(a, b, c) for a in enumerate((2, 3)) for b in enumerate(("red", "blue"))
                                             for c in enumerate((1, 2))]:
        single = ldm("generate", f"a {word} fox", "--model", tiny_model, "--seed", "3", "--g", "5", "--scheduler",
                     "euler-a", "--steps", str(steps), "--clip-skip", str(skip), "--out", f"s-{x}{y}{z}.png")
        assert single.code == 0, single.stderr
        cell = tmp_path / "g" / f"cell-{x + 1}-{y + 1}-{z + 1}.png"
        assert np.array_equal(_pixels(cell), _pixels(tmp_path / f"s-{x}{y}{z}.png")), (steps, word, skip)
    # the cells differ from one another, so the comparison above can fail
    assert not np.array_equal(_pixels(tmp_path / "g" / "cell-1-1-1.png"), _pixels(tmp_path / "g" / "cell-1-2-1.png"))


def test_lora_scale_and_hires_axes(ldm, tiny_model, tmp_path):
    from ldm_cli.training.methods import TEXT_TARGETS, UNET_TARGETS, add_lora, lora_state, save_lora
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    text_encoder = CLIPTextModel.from_pretrained(tiny_model, subfolder="text_encoder")
    torch.manual_seed(0)
    add_lora(unet, 4, 8.0, UNET_TARGETS)
    add_lora(text_encoder, 4, 8.0, TEXT_TARGETS)
    with torch.no_grad():
        for model in (unet, text_encoder):
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.2)
    lora = save_lora(tmp_path / "style.safetensors", lora_state(unet, text_encoder, rank=4, alpha=8.0, kohya=False), {})
    base = ("--model", tiny_model, "--seed", "2", "--steps", "2", "--scheduler", "ddim", "--lora", lora)
    result = ldm("grid", "a cat", *base, "--hires-scale", "1.5", "--x", "lora=0,0.8", "--y", "strength=0.5,0.8", "--out", "g")
    assert result.code == 0, result.stderr
    single = ldm("generate", "a cat", "--model", tiny_model, "--seed", "2", "--steps", "2", "--scheduler", "ddim",
                 "--lora", f"{lora}:0.8", "--hires-scale", "1.5", "--hires-strength", "0.8", "--out", "s.png")
    assert single.code == 0, single.stderr
    assert np.array_equal(_pixels(tmp_path / "g" / "cell-2-2-1.png"), _pixels(tmp_path / "s.png"))
    assert _pixels(tmp_path / "s.png").shape == (96, 96, 3)
    assert not np.array_equal(_pixels(tmp_path / "g" / "cell-1-2-1.png"), _pixels(tmp_path / "s.png"))


def test_grid_errors(ldm, tiny_model):
    assert "at least one axis" in ldm("grid", "a cat", "--model", tiny_model).stderr
    bad_cell = ldm("grid", "a cat", "--model", tiny_model, "--x", "steps=2,0")
    assert bad_cell.code == 2 and "--steps 0" in bad_cell.stderr
    not_found = ldm("grid", "a cat", "--model", tiny_model, "--x", "prompt=dog,fox")
    assert not_found.code == 2 and "'dog' is not in the prompt" in not_found.stderr
    no_lora = ldm("grid", "a cat", "--model", tiny_model, "--x", "lora=0.5,1")
    assert no_lora.code == 2 and "also pass --lora" in no_lora.stderr
