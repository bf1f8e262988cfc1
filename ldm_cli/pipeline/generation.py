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
from ldm_cli.pipeline.guidance import guidance_embedding, uses_unconditional_pass
from ldm_cli.models.loading import Components
from ldm_cli.pipeline.sampling import Conditioning, denoise
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
        from ldm_cli.pipeline.start import NoiseStart

        self.components = components
        self.device = device
        self.dtype = dtype
        self.start = start if start is not None else NoiseStart()  # pipeline/start.py: noise, init or masked init
        self._uncond_cache: dict[str, torch.Tensor] = {}

    def conditioning(self, prompt: str, plan: SamplingPlan) -> Conditioning:
        c = self.components
        cond = encode_prompts(c.tokenizer, c.text_encoder, [prompt])
        distilled_dim = getattr(c.unet.config, "time_cond_proj_dim", None)
        if distilled_dim:  # guidance-distilled (LCM): the scale goes in as an embedding, no unconditional pass
            embedding = guidance_embedding(plan.guidance, distilled_dim).to(self.device, cond.dtype)
            return Conditioning(cond, None, plan.guidance, timestep_cond=embedding)
        uncond = None
        if uses_unconditional_pass(plan.guidance):
            if plan.negative_prompt not in self._uncond_cache:
                self._uncond_cache[plan.negative_prompt] = encode_prompts(
                    c.tokenizer, c.text_encoder, [plan.negative_prompt]
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
        begun = self.start.begin(c, self.device, self.dtype, scheduler, generator, plan)
        step_kwargs = {"generator": generator} if spec_for(plan.scheduler).stochastic else {}
        final = denoise(c.unet, scheduler, begun.latents, conditioning, begun.timesteps, step_kwargs, on_step,
                        unet_extra=begun.unet_extra, after_step=begun.after_step)
        image = latent_ops.decode(c.vae, final)  # [1, 3, H, W] in [0, 1]
        pixels = self.start.finish(image)  # None, or the result composited over the init (inpainting)
        return GeneratedImage(prompt, seed, image, final, time.perf_counter() - started, pixels)

    def starting_point(self, scheduler, generator, plan: SamplingPlan):
        """(latents, timesteps) the loop starts from: the start's, without inpainting's extras."""
        begun = self.start.begin(self.components, self.device, self.dtype, scheduler, generator, plan)
        return begun.latents, begun.timesteps
