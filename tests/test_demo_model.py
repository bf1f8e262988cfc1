"""The shipped demo model (ldm_cli/assets/demo): it loads offline from the package, it is SD1-family,
and a handful of prompts, through the real `ldm generate`, make pictures the pixel checker accepts.

These guard the whole text-to-image path end to end (text encoder, guidance, the loop, several
schedulers, the VAE): a bug in any of them turns the pictures into something the checker rejects.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ldm_cli.demo.checker import read_image
from ldm_cli.models import BUNDLED_MODELS, load_components, resolve_source

DEMO = BUNDLED_MODELS["demo"]
pytestmark = pytest.mark.skipif(not (DEMO / "model_index.json").exists(), reason="demo model not built (make demo-model)")

# prompt, seed, scheduler, expected (colour, background, shape). The seeds are ones where the shipped
# model gets every attribute right (its adherence is far from perfect: see benchmarks/results/
# demo_adherence.json), so any change to the pipeline that alters these pictures is caught.
CASES = [
    ("a large blue square on a yellow background", 1, None, ("blue", "yellow", "square")),
    ("a large yellow square on a black background", 2, "ddim", ("yellow", "black", "square")),
    ("a small white triangle on a red background", 1, "euler", ("white", "red", "triangle")),
    ("a large green cross on a white background", 1, "dpm++2m", ("green", "white", "cross")),
]


def test_demo_model_is_in_the_package_and_sd1_family():
    source = resolve_source("demo")
    assert source.kind == "bundled" and "ldm_cli" in source.path.parts
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size <= 30 * 1024 * 1024
    c = load_components(source, "cpu", offline=True)
    assert len(c.tokenizer) == 49408 and c.tokenizer.model_max_length == 77
    assert c.vae_scale_factor == 8 and c.vae.config.latent_channels == 4 and c.native_size == 128
    assert c.unet.config.cross_attention_dim == c.text_encoder.config.hidden_size
    assert c.unet.dtype == c.vae.dtype == c.text_encoder.dtype == __import__("torch").float32
    assert c.scheduler_config["beta_schedule"] == "scaled_linear" and c.scheduler_config["prediction_type"] == "epsilon"


@pytest.mark.parametrize("prompt,seed,scheduler,expected", CASES)
def test_demo_model_draws_what_the_prompt_says(ldm, tmp_path, monkeypatch, prompt, seed, scheduler, expected):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["generate", prompt, "--model", "demo", "--steps", "20", "--seed", seed, "--out", tmp_path / "x.png", "--json"]
    if scheduler:
        args += ["--scheduler", scheduler]
    result = ldm(*args)
    assert result.code == 0, result.stderr
    with Image.open(tmp_path / "x.png") as image:
        assert image.size == (128, 128)
        reading = read_image(np.asarray(image.convert("RGB")))
    assert (reading.colour, reading.background, reading.shape) == expected, reading
    assert json.loads(result.stdout.splitlines()[-1])
