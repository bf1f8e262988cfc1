"""`ldm explain schedule` and `ldm explain forward`: the numbers are the scheduler's own, and the
forward process samples q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_cli.demo.shapes import Scene, render
from ldm_cli.explain.forward import forward_process, parse_timesteps, q_sample
from ldm_cli.models.loading import BUNDLED_MODELS, read_scheduler_config
from ldm_cli.pipeline.loop.schedulers import build_scheduler

DEMO = BUNDLED_MODELS["demo"]
needs_demo = pytest.mark.skipif(not (DEMO / "model_index.json").exists(), reason="demo model not built")


@pytest.mark.parametrize("scheduler", ["ddim", "euler", "dpm++2m-karras"])
def test_schedule_json_is_the_schedulers_own(ldm, tiny_model, scheduler, tmp_path):
    result = ldm("explain", "schedule", "--model", tiny_model, "--scheduler", scheduler, "--steps", "12", "--json",
                 "-o", tmp_path / "s.png")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    reference = build_scheduler(scheduler, read_scheduler_config(tiny_model))
    reference.set_timesteps(12)
    assert data["alphas_cumprod"] == [float(a) for a in reference.alphas_cumprod]
    assert len(data["alphas_cumprod"]) == reference.config.num_train_timesteps
    assert data["timesteps"] == [int(t) for t in reference.timesteps]
    if hasattr(reference, "sigmas"):
        assert data["sigmas"] == pytest.approx([float(s) for s in reference.sigmas])
    assert Image.open(data["plot"]).size[0] > 300


@needs_demo
def test_schedule_of_the_demo_model_defaults_to_its_own_sampler(ldm, tmp_path):
    result = ldm("explain", "schedule", "--model", "demo", "--steps", "20", "--json")
    data = json.loads(result.stdout)
    assert data["scheduler"] == "ddim" and data["timesteps"][0] == 999  # trailing spacing starts at T-1
    betas = np.array(read_scheduler_config(DEMO)["trained_betas"])
    assert np.allclose(data["alphas_cumprod"], np.cumprod(1 - betas), rtol=1e-6)


def test_forward_process_matches_the_closed_form():
    """Empirical mean and variance of x_t over many eps equal sqrt(abar) x_0 and 1 - abar."""
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.5
    eps = torch.randn(20000, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for abar in (0.999, 0.5, 0.02):
        x_t = q_sample(x0, abar, eps)
        assert torch.allclose(x_t.mean(0), abar**0.5 * x0[0], atol=4 * (1 / 20000) ** 0.5)
        assert torch.allclose(x_t.var(0), torch.full_like(x0[0], 1 - abar), rtol=0.06)


def test_forward_process_uses_one_eps_for_every_t():
    x0 = torch.randn(1, 4, 8, 8)
    abars = torch.linspace(0.999, 0.001, 1000, dtype=torch.float64)
    rows = forward_process(x0, abars, (0, 500, 999), seed=3)
    noise = [(r.latents - r.abar**0.5 * x0) / (1 - r.abar) ** 0.5 for r in rows]
    assert torch.allclose(noise[0], noise[1], atol=1e-4) and torch.allclose(noise[1], noise[2], atol=1e-4)
    assert rows[0].snr == pytest.approx(0.999 / 0.001)


@needs_demo
def test_forward_command_writes_the_row_and_snrs(ldm, tmp_path):
    render(Scene("red", "blue", "circle", "large")).save(tmp_path / "shape.png")
    result = ldm("explain", "forward", tmp_path / "shape.png", "--model", "demo", "--t", "0,500,999", "--json")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    abar = np.cumprod(1 - np.array(read_scheduler_config(DEMO)["trained_betas"]))
    assert [row["t"] for row in data["timesteps"]] == [0, 500, 999]
    assert [row["snr"] for row in data["timesteps"]] == pytest.approx([abar[t] / (1 - abar[t]) for t in (0, 500, 999)], rel=1e-4)
    assert data["timesteps"][-1]["latent_std"] == pytest.approx(1.0, abs=0.1)  # x_T is almost pure noise
    assert len(data["latent_channels"]) == 4 and Image.open(data["plot"]).size[0] > 500


@pytest.mark.parametrize("value", ["abc", "", "5,-1", "1.5"])
def test_bad_timesteps_are_one_line_usage_errors(ldm, tmp_path, value):
    render(Scene("red", "blue", "circle", "large")).save(tmp_path / "shape.png")
    result = ldm("explain", "forward", tmp_path / "shape.png", "--t", value, "--model", "no/such-model")
    assert result.code == 2 and result.stderr.startswith("ldm: error: --t") and len(result.stderr.splitlines()) == 1


def test_timesteps_beyond_the_schedule_are_refused():
    with pytest.raises(Exception, match="from 0 to 999"):
        parse_timesteps("0,1000", 1000)


def test_explain_refuses_a_missing_image_and_a_non_png_picture(ldm, tmp_path):
    assert ldm("explain", "forward", tmp_path / "none.png").stderr.startswith("ldm: error: IMAGE")
    result = ldm("explain", "schedule", "-o", tmp_path / "s.jpg")
    assert result.code == 2 and "ending in .png" in result.stderr
