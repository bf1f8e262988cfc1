"""Inpainting: pixel parity with diffusers' StableDiffusionInpaintPipeline for 4- and 9-channel UNets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_cli.files.image_io import load_image
from ldm_cli.models.loading import load_components, resolve_source
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.pipeline.starts.img2img import InitSource
from ldm_cli.pipeline.starts.inpaint import InpaintOptions, MaskedStart
from ldm_cli.reference import reference_inpaint_pipeline
from ldm_cli.tiny import build_tiny_model

PROMPT = "a red circle on a blue field"


@pytest.fixture(scope="module")
def nine_channel_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny9") / "tiny9", seed=1, in_channels=9)


@pytest.fixture(scope="module")
def models(tiny_model, nine_channel_model):
    return {4: load_components(resolve_source(str(tiny_model)), "cpu", torch.float32),
            9: load_components(resolve_source(str(nine_channel_model)), "cpu", torch.float32)}


def ours(components, pictures, scheduler, strength, seed, steps=5, guidance=7.5):
    init_png, mask_png = pictures
    image = load_image(init_png)
    init = InitSource(init_png, strength, image=image)
    mask = np.where(np.asarray(Image.open(mask_png)) >= 128, 255, 0).astype(np.uint8)
    options = InpaintOptions(mask_blur=0, keep_unmasked=False)
    start = MaskedStart(image.pixels, mask, strength, options, init.record(), {})
    start.prepare(components)
    plan = start.fit_plan(SamplingPlan(64, 64, steps, guidance, scheduler))
    return TextToImage(components, "cpu", torch.float32, start).generate(PROMPT, seed, plan).pixels


def reference(components, pictures, scheduler, strength, seed, steps=5, guidance=7.5):
    init_png, mask_png = pictures
    pipe = reference_inpaint_pipeline(components, scheduler)
    out = pipe(PROMPT, image=Image.open(init_png), mask_image=Image.open(mask_png), strength=strength,
               num_inference_steps=steps, guidance_scale=guidance, generator=torch.Generator().manual_seed(seed),
               output_type="np", height=64, width=64)
    return np.round(out.images[0] * 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [4, 9])
@pytest.mark.parametrize("scheduler,strength", [("ddim", 1.0), ("euler-a", 1.0), ("dpm++2m", 0.6), ("pndm", 0.8)])
def test_pixels_equal_the_inpaint_pipeline(models, inpaint_pictures, channels, scheduler, strength):
    mine = ours(models[channels], inpaint_pictures, scheduler, strength, seed=3)
    ref = reference(models[channels], inpaint_pictures, scheduler, strength, seed=3)
    assert mine.shape == ref.shape == (64, 64, 3)
    assert np.abs(mine.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("channels", [4, 9])
def test_the_oracle_can_tell_seeds_strengths_and_masks_apart(models, inpaint_pictures, channels, tmp_path):
    c = models[channels]
    a = ours(c, inpaint_pictures, "ddim", 1.0, seed=3)
    assert np.abs(a.astype(int) - ours(c, inpaint_pictures, "ddim", 1.0, seed=4).astype(int)).max() > 2
    assert np.abs(a.astype(int) - ours(c, inpaint_pictures, "ddim", 0.5, seed=3).astype(int)).max() > 2
