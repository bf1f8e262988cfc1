"""diffusers' own pipelines built on our loaded components: the oracle that the parity tests and
the benchmarks compare ldm against (same weights, same scheduler config, safety checker off)."""

from __future__ import annotations

from ldm_cli.models.loading import Components
from ldm_cli.pipeline.loop.schedulers import build_scheduler


def reference_pipeline(components: Components, scheduler: str, img2img: bool = False):
    """StableDiffusionPipeline (or its img2img sibling) sharing `components`' models."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    return _build(StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline, components, scheduler)


def lcm_reference_pipeline(components: Components):
    """LatentConsistencyModelPipeline (LCMScheduler) sharing `components`' models: the oracle for LCM UNets."""
    from diffusers import LatentConsistencyModelPipeline

    return _build(LatentConsistencyModelPipeline, components, "lcm")


def reference_inpaint_pipeline(components: Components, scheduler: str):
    """StableDiffusionInpaintPipeline sharing `components`' models (4- or 9-channel UNet)."""
    from diffusers import StableDiffusionInpaintPipeline

    return _build(StableDiffusionInpaintPipeline, components, scheduler)


def _build(cls, components: Components, scheduler: str):
    pipe = cls(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, scheduler=build_scheduler(scheduler, components.scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
