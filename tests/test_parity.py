"""Oracle: for the same components, scheduler, seed and settings, our loop reproduces diffusers'
StableDiffusionPipeline (safety checker off) within 1e-4 on the float32 CPU path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldm_cli.reference import reference_pipeline
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.models.loading import load_components, resolve_source
from ldm_cli.pipeline.loop.schedulers import SCHEDULERS, TCD_DEFAULT_GAMMA


@pytest.fixture(scope="module")
def components(tiny_model):
    return load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)


def reference_image(components, scheduler_name, prompt, seed, steps, guidance, negative="", size=64):
    pipe = reference_pipeline(components, scheduler_name)
    eta = TCD_DEFAULT_GAMMA if scheduler_name == "tcd" else 0.0  # the pipeline's default, 0.0, is DDIM's eta
    out = pipe(prompt, negative_prompt=negative or None, num_inference_steps=steps, guidance_scale=guidance, eta=eta,
               generator=torch.Generator().manual_seed(seed), output_type="np", height=size, width=size)
    return out.images[0]  # [H, W, 3] float in [0, 1]


def ours(components, scheduler_name, prompt, seed, steps, guidance, negative="", size=64):
    plan = SamplingPlan(size, size, steps, guidance, scheduler_name, negative)
    image = TextToImage(components, "cpu", torch.float32).generate(prompt, seed, plan).image
    return image[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("scheduler_name", sorted(SCHEDULERS))
def test_matches_stable_diffusion_pipeline(components, scheduler_name):
    ref = reference_image(components, scheduler_name, "a red circle on a blue background", 42, 6, 7.5)
    mine = ours(components, scheduler_name, "a red circle on a blue background", 42, 6, 7.5)
    assert np.abs(ref - mine).max() <= 1e-4


def test_matches_with_negative_prompt_no_guidance_and_other_size(components):
    for guidance, negative, size in [(5.0, "blurry, low quality", 64), (1.0, "", 64), (7.5, "", 96)]:
        ref = reference_image(components, "euler-a", "a cat", 3, 5, guidance, negative, size)
        mine = ours(components, "euler-a", "a cat", 3, 5, guidance, negative, size)
        assert ref.shape == mine.shape == (size, size, 3)
        assert np.abs(ref - mine).max() <= 1e-4


def test_seed_changes_the_image(components):
    """Guards the oracle itself: different seeds must give measurably different images."""
    a = ours(components, "ddim", "a cat", 1, 4, 7.5)
    b = ours(components, "ddim", "a cat", 2, 4, 7.5)
    assert np.abs(a - b).max() > 1e-3
