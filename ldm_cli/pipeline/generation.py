"""Text -> image with the components: the numbered steps of latent diffusion sampling.

    1. encode the prompt and the negative prompt with CLIP            [1, 77, D] each
    2. build a fresh scheduler and its timesteps
    3. draw seeded noise on the CPU and scale it by init_noise_sigma  [1, 4, H/8, W/8]
    4. denoise with classifier-free guidance (sampling.denoise)
    5. decode with the VAE                                            [1, 3, H, W]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ldm_cli.pipeline import latents as latent_ops
from ldm_cli.pipeline.guidance import uses_unconditional_pass
from ldm_cli.models.loading import Components
from ldm_cli.pipeline.sampling import Conditioning, denoise, initial_noise
from ldm_cli.pipeline.schedulers import build_scheduler, spec_for
from ldm_cli.pipeline.text import encode_prompts


@dataclass(frozen=True)
class SamplingPlan:
    """Everything one image needs besides prompt and seed, resolved against the model."""

    height: int
    width: int
    steps: int
    guidance: float
    scheduler: str
    negative_prompt: str = ""

    def latent_shape(self, components: Components) -> tuple[int, int, int, int]:
        factor = components.vae_scale_factor
        return (1, components.unet.config.in_channels, self.height // factor, self.width // factor)


@dataclass
class GeneratedImage:
    prompt: str
    seed: int
    image: torch.Tensor  # [1, 3, H, W] float32 in [0, 1]
    latents: torch.Tensor  # final latents [1, 4, h, w]
    seconds: float

    @property
    def pixels(self) -> np.ndarray:
        """[H, W, 3] uint8, rounded as diffusers rounds."""
        return latent_ops.to_uint8(self.image)[0]


class TextToImage:
    """Holds loaded components and makes images one at a time (image i is reproducible alone)."""

    def __init__(self, components: Components, device: str, dtype: torch.dtype):
        self.components = components
        self.device = device
        self.dtype = dtype
        self._uncond_cache: dict[str, torch.Tensor] = {}
        self.text_for_clip = lambda text: text  # e.g. network tags removed, embedding tokens expanded

    def conditioning(self, prompt: str, plan: SamplingPlan) -> Conditioning:
        c = self.components
        cond = encode_prompts(c.tokenizer, c.text_encoder, [self.text_for_clip(prompt)])
        uncond = None
        if uses_unconditional_pass(plan.guidance):
            if plan.negative_prompt not in self._uncond_cache:
                self._uncond_cache[plan.negative_prompt] = encode_prompts(
                    c.tokenizer, c.text_encoder, [self.text_for_clip(plan.negative_prompt)]
                )
            uncond = self._uncond_cache[plan.negative_prompt]
        return Conditioning(cond, uncond, plan.guidance)

    def generate(self, prompt: str, seed: int, plan: SamplingPlan, on_step=None) -> GeneratedImage:
        started = time.perf_counter()
        c = self.components
        conditioning = self.conditioning(prompt, plan)
        scheduler = build_scheduler(plan.scheduler, c.scheduler_config)
        scheduler.set_timesteps(plan.steps, device=self.device)
        generator = torch.Generator("cpu").manual_seed(seed)
        latents, timesteps = self.starting_point(scheduler, generator, plan)
        step_kwargs = {"generator": generator} if spec_for(plan.scheduler).stochastic else {}
        final = denoise(c.unet, scheduler, latents, conditioning, timesteps, step_kwargs, on_step)
        image = latent_ops.decode(c.vae, final)  # [1, 3, H, W] in [0, 1]
        return GeneratedImage(prompt, seed, image, final, time.perf_counter() - started)

    def starting_point(self, scheduler, generator, plan: SamplingPlan):
        """Pure noise at the first timestep; subclasses start elsewhere (img2img)."""
        noise = initial_noise(plan.latent_shape(self.components), generator, self.dtype, self.device)
        return noise * scheduler.init_noise_sigma, scheduler.timesteps
