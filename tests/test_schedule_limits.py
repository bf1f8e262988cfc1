"""Step counts a sampler cannot take on a model's schedule: one line before any step, not a crash mid-run."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "ddpm"])
def test_leading_spacing_at_every_training_timestep_is_refused(ldm, tiny_model, scheduler):
    # SD1's scheduler config ("leading", steps_offset 1) at 1000 steps would start at timestep 1000
    result = ldm("generate", "a cat", "--model", tiny_model, "--steps", "1000", "--scheduler", scheduler, "--out", "x.png")
    assert result.code == 2, result.stderr
    assert "--steps 1000" in result.stderr and "use --steps 999 or fewer" in result.stderr
    assert "internal error" not in result.stderr


def test_lcm_beyond_its_original_steps_is_refused(ldm, tiny_model):
    result = ldm("generate", "a cat", "--model", tiny_model, "--steps", "51", "--scheduler", "lcm", "--out", "x.png")
    assert result.code == 2 and "at most 50 steps" in result.stderr, result.stderr


@pytest.mark.parametrize("scheduler", ["euler", "euler-a", "lms", "heun", "dpm++2m"])
def test_sigma_samplers_take_every_training_timestep(tiny_model, scheduler):
    import json

    from ldm_cli.pipeline.generation import SamplingPlan
    from ldm_cli.pipeline.txt2img import check_timesteps

    config = json.loads((tiny_model / "scheduler" / "scheduler_config.json").read_text())
    plan = SamplingPlan(height=64, width=64, steps=1000, guidance=7.5, scheduler=scheduler)
    check_timesteps(plan, config)  # no error: they interpolate their sigmas, t = 1000 included
