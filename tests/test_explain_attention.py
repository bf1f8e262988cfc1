"""`ldm generate --attention-maps`: the maps sum as documented (every latent pixel's 77 positions sum
to 1; a word's map is the sum of its tokens'), words come back whole from subword tokens, and the
picture is bit-identical to the one made without the flag (the recording leaves the UNet as it was)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from ldm_cli.explain.attention import cross_attention_modules, recording, words_of


def _run(ldm, model, out, *extra, steps=4):
    result = ldm("generate", "a large red circle on a blue background", "--model", model, "--seed", "3",
                 "--steps", str(steps), "-o", out, "--json", *extra)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_attention_maps_sum_as_documented_and_leave_the_image_unchanged(ldm, tiny_model, tmp_path):
    with_maps = _run(ldm, tiny_model, tmp_path / "a.png", "--attention-maps")
    without = _run(ldm, tiny_model, tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(with_maps["path"])), np.asarray(Image.open(without["path"])))
    assert "attention_maps" not in without and not (tmp_path / "b-attention.safetensors").exists()
    assert with_maps["attention_maps"] == str(tmp_path / "a-attention.safetensors")
    with safe_open(with_maps["attention_maps"], "pt") as f:
        meta = f.metadata()
        tokens, words = f.get_tensor("token_maps"), f.get_tensor("word_maps")
    assert tokens.shape[0] == 77 and tokens.shape[1:] == words.shape[1:]
    assert torch.allclose(tokens.sum(0), torch.ones(tokens.shape[1:]), atol=1e-5)  # a distribution per pixel
    assert (tokens >= 0).all()
    assert json.loads(meta["words"]) == "a large red circle on a blue background".split()
    for index, positions in enumerate(json.loads(meta["token_positions"])):
        assert torch.allclose(words[index], tokens[positions].sum(0))
    assert Image.open(with_maps["attention_png"]).size[0] > 400


def test_recording_is_installed_only_inside_the_block(tiny_model):
    from ldm_cli.models.loading import load_components, resolve_source

    unet = load_components(resolve_source(str(tiny_model))).unet
    before = {name: type(p) for name, p in unet.attn_processors.items()}
    with recording(unet, (8, 8)):
        during = {name: type(p).__name__ for name, p in unet.attn_processors.items()}
    assert {n for n, kind in during.items() if kind == "RecordingProcessor"} == {
        f"{name}.processor" for name, _ in cross_attention_modules(unet)} != set()
    assert all("attn2" in n for n, kind in during.items() if kind == "RecordingProcessor")
    assert {name: type(p) for name, p in unet.attn_processors.items()} == before


def test_subword_tokens_are_grouped_back_into_words(tiny_model):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_model / "tokenizer")
    prompt = "a photorealistic lighthouse overlooking zyxwvut"
    words, positions, tokens = words_of(tokenizer, prompt)
    assert words == prompt.split()
    assert any(len(p) > 1 for p in positions)  # some word did split into several tokens
    assert [p for group in positions for p in group] == list(range(1, 1 + sum(map(len, positions))))
    assert tokens[0] == "<|startoftext|>"


@pytest.mark.skipif(not __import__("ldm_cli.models.loading", fromlist=["x"]).BUNDLED_MODELS["demo"].joinpath("model_index.json").exists(),
                    reason="demo model not built")
def test_the_shape_words_map_sits_on_the_shape_in_the_demo_model(ldm, tmp_path):
    """The circle's map is stronger inside the drawn circle than outside it, the background's weaker
    (measured here: 1.33x and 0.46x; benchmarks/attention_iou.py measures IoU over 24 pictures)."""
    from ldm_cli.demo.checker import shape_mask
    from ldm_cli.explain.attention import upsample

    data = _run(ldm, "demo", tmp_path / "c.png", "--attention-maps", steps=20)
    pixels = np.asarray(Image.open(data["path"]).convert("RGB"))
    mask = shape_mask(pixels)
    with safe_open(data["attention_maps"], "pt") as f:
        words = json.loads(f.metadata()["words"])
        maps = f.get_tensor("word_maps")
    circle, background = (upsample(maps[words.index(w)], pixels.shape[:2]).numpy() for w in ("circle", "background"))
    assert circle[mask].mean() > 1.15 * circle[~mask].mean()
    assert background[mask].mean() < 0.75 * background[~mask].mean()
