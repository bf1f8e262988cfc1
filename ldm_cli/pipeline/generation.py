"""Text -> image with the components: the numbered steps of latent diffusion sampling.

    1. encode the prompt and the negative prompt with CLIP            [1, 77*k, D] each
       (A1111's weights, chunks and clip skip: pipeline/prompts/conditioning.py)
    2. build a fresh scheduler and its timesteps
    3. draw seeded noise on the CPU and scale it by init_noise_sigma  [1, 4, H/8, W/8]
       (with a variation seed: slerped toward its noise, pipeline/loop/noise.py)
    4. denoise with classifier-free guidance (sampling.denoise)
    5. decode with the VAE                                            [1, 3, H, W]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ldm_cli.pipeline.codec import latents as latent_ops
from ldm_cli.pipeline.loop.guidance import guidance_embedding, uses_unconditional_pass
from ldm_cli.models.loading import Components
from ldm_cli.models.token_merging import merging_tokens
from ldm_cli.pipeline.loop.sampling import Conditioning, denoise
from ldm_cli.pipeline.loop.deepcache import cached_unet
from ldm_cli.pipeline.loop.schedulers import build_scheduler
from ldm_cli.pipeline.prompts.conditioning import PromptEncoder, pad_with_empty
from ldm_cli.pipeline.loop.noise import plan_noise, scheduler_step_kwargs


@dataclass(frozen=True)
class SamplingPlan:
    """Everything one image needs besides prompt and seed, resolved against the model."""

    height: int
    width: int
    steps: int
    guidance: float
    scheduler: str
    negative_prompt: str = ""
    clip_skip: int = 1  # A1111 numbering: 1 = the last layer
    prompt_syntax: str = "a1111"  # or "plain": brackets are literal text
    schedule_type: str | None = None  # None -> the sampler's plain schedule (schedule_types.SCHEDULE_TYPES)
    variation_seed: int | None = None
    variation_strength: float = 0.0
    eta_noise_seed_delta: int = 0  # A1111's ENSD: re-seeds the per-step noise of stochastic samplers
    pad_conds: bool = False  # A1111's "Pad conds": pad the shorter conditioning instead of two UNet calls
    hires: object | None = None  # hires.HiresPlan: a second, upscaled img2img pass
    cache_interval: int = 1  # DeepCache (pipeline/loop/deepcache.py): a full UNet pass every Nth step; 1 = off
    token_merging: float = 0.0  # ToMe (models/token_merging.py): share of full-resolution tokens merged; 0 = off
    tcd_gamma: float | None = None  # TCD's stochasticity, 0..1 (None: the sampler is not tcd)

    def latent_shape(self, components: Components) -> tuple[int, int, int, int]:
        factor = components.vae_scale_factor
        return (1, components.vae.config.latent_channels, self.height // factor, self.width // factor)


@dataclass
class GeneratedImage:
    prompt: str
    seed: int
    image: torch.Tensor  # [1, 3, H, W] float32 in [0, 1]
    latents: torch.Tensor  # final latents [1, 4, h, w]
    seconds: float
    final_pixels: np.ndarray | None = None  # set when the start composites (inpainting keeps the unmasked picture)

    @property
    def pixels(self) -> np.ndarray:
        """[H, W, 3] uint8, rounded as diffusers rounds."""
        if self.final_pixels is not None:
            return self.final_pixels
        return latent_ops.to_uint8(self.image)[0]


class TextToImage:
    """Holds loaded components and makes images one at a time (image i is reproducible alone)."""

    def __init__(self, components: Components, device: str, dtype: torch.dtype, start=None):
        from ldm_cli.pipeline.starts.start import NoiseStart

        self.components = components
        self.device = device
        self.dtype = dtype
        self.start = start if start is not None else NoiseStart()  # pipeline/starts/start.py: noise, init or masked init
        self._uncond_cache: dict[str, torch.Tensor] = {}
        self.text_for_clip = lambda text: text  # e.g. network tags removed, embedding tokens expanded

    def conditioning(self, prompt: str, plan: SamplingPlan) -> Conditioning:
        c = self.components
        encoder = PromptEncoder(c.tokenizer, c.text_encoder, plan.prompt_syntax, plan.clip_skip)
        cond = encoder.encode(self.text_for_clip(prompt))
        distilled_dim = getattr(c.unet.config, "time_cond_proj_dim", None)
        if distilled_dim:  # guidance-distilled (LCM): the scale goes in as an embedding, no unconditional pass
            embedding = guidance_embedding(plan.guidance, distilled_dim).to(self.device, cond.dtype)
            return Conditioning(cond, None, plan.guidance, timestep_cond=embedding)
        uncond = None
        if uses_unconditional_pass(plan.guidance):
            uncond = self._cached(encoder, self.text_for_clip(plan.negative_prompt))
            if plan.pad_conds and uncond.shape[1] != cond.shape[1]:
                cond, uncond = pad_with_empty(cond, uncond, self._cached(encoder, ""))
        return Conditioning(cond, uncond, plan.guidance)

    def _cached(self, encoder: PromptEncoder, prompt: str):
        key = (prompt, encoder.syntax, encoder.clip_skip)
        if key not in self._uncond_cache:
            self._uncond_cache[key] = encoder.encode(prompt)
        return self._uncond_cache[key]

    def generate(self, prompt: str, seed: int, plan: SamplingPlan, on_step=None) -> GeneratedImage:
        started = time.perf_counter()
        c = self.components
        conditioning = self.conditioning(prompt, plan)
        with merging_tokens(c.unet, plan.token_merging):  # both passes, as A1111 does with its hr ratio equal
            if plan.hires is None:
                final = self.sample(conditioning, seed, plan, on_step)
            else:
                from ldm_cli.pipeline.starts.hires import second_pass, step_counter

                counted, continued = step_counter(on_step)  # the second pass's steps number on from the first's
                first = self.sample(conditioning, seed, plan, counted)
                final = second_pass(self, conditioning, first, seed, plan, continued)
        image = latent_ops.decode(c.vae, final)  # [1, 3, H, W] in [0, 1]
        pixels = self.start.finish(image)  # None, or the result composited over the init (inpainting)
        return GeneratedImage(prompt, seed, image, final, time.perf_counter() - started, pixels)

    def sample(self, conditioning: Conditioning, seed: int, plan: SamplingPlan, on_step=None):
        """Scheduler, seeded start and the denoising loop: the final latents."""
        c = self.components
        scheduler = build_scheduler(plan.scheduler, c.scheduler_config, plan.schedule_type)
        scheduler.set_timesteps(plan.steps, device=self.device)
        generator = torch.Generator("cpu").manual_seed(seed)
        begun = self.start.begin(c, self.device, self.dtype, scheduler, generator, plan)
        step_kwargs = scheduler_step_kwargs(plan, generator, seed)
        unet = cached_unet(c.unet, plan.cache_interval)  # the UNet itself unless --cache-interval > 1
        return denoise(unet, scheduler, begun.latents, conditioning, begun.timesteps, step_kwargs, on_step,
                       unet_extra=begun.unet_extra, after_step=begun.after_step)

    def noise(self, shape, generator, plan: SamplingPlan):
        """The seed's noise [1, C, h, w] (slerped toward the variation seed's), on the device."""
        return plan_noise(shape, generator, self.dtype, self.device, plan)

    def starting_point(self, scheduler, generator, plan: SamplingPlan):
        """(latents, timesteps) the loop starts from: the start's, without inpainting's extras."""
        begun = self.start.begin(self.components, self.device, self.dtype, scheduler, generator, plan)
        return begun.latents, begun.timesteps
