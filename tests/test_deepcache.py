"""DeepCache feature caching (pipeline/loop/deepcache.py): off is the plain UNet, on stays close."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_cli.pipeline.loop.deepcache import CachedUNet, cached_unet


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float64)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def unet(tiny_model):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_model / "unet").eval()


def _inputs(unet, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, unet.config.in_channels, 8, 8, generator=g)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    return x, text


def test_interval_one_is_the_plain_unet(unet):
    assert cached_unet(unet, 1) is unet


def test_full_step_is_bit_identical_and_the_shallow_path_rebuilds_the_same_step(unet):
    x, text = _inputs(unet)
    t = torch.tensor(500)
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
        wrapped = CachedUNet(unet, 3)
        wrapped.begin_step(0)
        full = wrapped(x, t, encoder_hidden_states=text)[0]
        # the shallow path fed with the deep features of this very step must give this step's output
        shallow = wrapped.shallow(x, t, text, None, wrapped.cached[0])
    assert torch.equal(plain, full)
    torch.testing.assert_close(shallow, plain, rtol=1e-5, atol=1e-5)
    # on a cached step only the shallow path runs, with the last full step's features
    with torch.no_grad():
        wrapped.begin_step(1)
        x2 = x + 0.1
        cached = wrapped(x2, torch.tensor(480), encoder_hidden_states=text)[0]
        fresh = unet(x2, torch.tensor(480), encoder_hidden_states=text, return_dict=False)[0]
    assert wrapped.full_steps == 1 and not torch.equal(cached, fresh)


def test_cli_interval_one_matches_default_and_interval_three_stays_close(ldm, tiny_model, tmp_path):
    common = ("a red circle", "--model", tiny_model, "--steps", "9", "--seed", "3", "--scheduler", "dpm++2m")
    assert ldm("generate", *common, "--out", "plain.png").code == 0
    assert ldm("generate", *common, "--cache-interval", "1", "--out", "one.png").code == 0
    result = ldm("generate", *common, "--cache-interval", "3", "--out", "three.png")
    assert result.code == 0, result.stderr
    plain, one, three = (_pixels(tmp_path / f"{n}.png") for n in ("plain", "one", "three"))
    assert np.array_equal(plain, one)
    assert not np.array_equal(plain, three)
    assert _psnr(plain, three) > 15  # a random tiny UNet: close, not equal (the demo model's figures: benchmarks/)
    record = json.loads(Image.open(tmp_path / "three.png").text["ldm"])
    assert record["settings"]["cache_interval"] == 3
    again = ldm("generate", "--from", "three.png", "--out", "again.png")
    assert again.code == 0 and np.array_equal(_pixels(tmp_path / "again.png"), three)


def test_bad_interval_is_refused(ldm, tiny_model):
    result = ldm("generate", "a cat", "--model", tiny_model, "--cache-interval", "0")
    assert result.code == 2 and "--cache-interval 0" in result.stderr


def test_two_unet_calls_per_step_each_keep_their_own_cache(ldm, tiny_model, tmp_path):
    # a prompt longer than 75 tokens and a short negative prompt: cond and uncond run as two calls
    long_prompt = " ".join(["a red circle on a blue background"] * 15)
    common = (long_prompt, "--model", tiny_model, "--steps", "6", "--seed", "2", "--neg", "blurry")
    assert ldm("generate", *common, "--out", "plain.png").code == 0
    result = ldm("generate", *common, "--cache-interval", "2", "--out", "cached.png")
    assert result.code == 0, result.stderr
    assert _psnr(_pixels(tmp_path / "plain.png"), _pixels(tmp_path / "cached.png")) > 15


def test_each_call_of_a_step_reuses_its_own_features(unet):
    x, text = _inputs(unet, batch=1)
    other = torch.randn_like(text)
    t = torch.tensor(300)
    wrapped = CachedUNet(unet, 2)
    with torch.no_grad():
        wrapped.begin_step(0)
        cond, uncond = wrapped(x, t, encoder_hidden_states=text)[0], wrapped(x, t, encoder_hidden_states=other)[0]
        wrapped.begin_step(1)  # cached: same inputs again give each call's own full output back
        cond2, uncond2 = wrapped(x, t, encoder_hidden_states=text)[0], wrapped(x, t, encoder_hidden_states=other)[0]
    assert wrapped.full_steps == 2  # the two calls of step 0
    torch.testing.assert_close(cond2, cond, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(uncond2, uncond, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond, uncond)
