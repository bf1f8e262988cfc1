"""The denoising loop: DDPM's sampling algorithm generalised to any diffusers scheduler.

No I/O and no printing here: progress and intermediates go through the `on_step` callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ldm_cli.pipeline.loop.guidance import guide


@dataclass
class Conditioning:
    """Text conditioning for one image: cond [1,77k,D], uncond [1,77j,D] or None when g <= 1."""

    cond: object
    uncond: object | None
    guidance_scale: float
    timestep_cond: object | None = None  # [1, D] guidance embedding for guidance-distilled (LCM) UNets

    def batch(self):
        """[uncond, cond] stacked so one UNet call serves both halves of guidance."""
        if self.uncond is None:
            return self.cond
        return torch.cat([self.uncond, self.cond])  # [2B, 77, D]


@dataclass
class StepInfo:
    index: int  # 0-based position in the timestep list
    total: int
    timestep: int
    latents: object  # x after this step, in the scheduler's own scale
    scheduler: object


def predict_noise(unet, scheduler, latents, t, conditioning: Conditioning, unet_extra=None):
    """One guided noise prediction: a single UNet call on the [uncond, cond] batch.

    `unet_extra` [B, C, h, w] is appended after scaling (an inpainting UNet's mask and masked picture)."""
    guided = conditioning.uncond is not None
    if guided and conditioning.uncond.shape[1] != conditioning.cond.shape[1]:
        return _predict_unbatched(unet, scheduler, latents, t, conditioning)
    x_in = torch.cat([latents, latents]) if guided else latents  # [2B, C, h, w] when guided
    x_in = scheduler.scale_model_input(x_in, t)
    if unet_extra is not None:
        x_in = torch.cat([x_in, torch.cat([unet_extra] * (len(x_in) // len(unet_extra)))], dim=1)
    extra = {} if conditioning.timestep_cond is None else {"timestep_cond": conditioning.timestep_cond}
    eps = unet(x_in, t, encoder_hidden_states=conditioning.batch(), return_dict=False, **extra)[0]
    if not guided:
        return eps
    eps_uncond, eps_cond = eps.chunk(2)
    return guide(eps_uncond, eps_cond, conditioning.guidance_scale)


def _predict_unbatched(unet, scheduler, latents, t, conditioning: Conditioning):
    """Prompt and negative prompt of different lengths (77*k tokens): two UNet calls, as A1111 does
    unless "Pad conds" is on."""
    x_in = scheduler.scale_model_input(latents, t)
    eps_cond = unet(x_in, t, encoder_hidden_states=conditioning.cond, return_dict=False)[0]
    eps_uncond = unet(x_in, t, encoder_hidden_states=conditioning.uncond, return_dict=False)[0]
    return guide(eps_uncond, eps_cond, conditioning.guidance_scale)


def denoise(
    unet,
    scheduler,
    latents,
    conditioning: Conditioning,
    timesteps,
    step_kwargs: dict | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    unet_extra=None,
    after_step: Callable[[int, object], object] | None = None,
):
    """Run the reverse process over `timesteps` from `latents` (already scaled to the first sigma).

    `after_step(i, latents)` may replace the latents after each step (4-channel inpainting's blend)."""
    step_kwargs = step_kwargs or {}
    total = len(timesteps)
    with torch.no_grad():
        for index, t in enumerate(timesteps):
            if hasattr(unet, "begin_step"):  # deepcache.CachedUNet: a full pass every Nth step
                unet.begin_step(index)
            eps = predict_noise(unet, scheduler, latents, t, conditioning, unet_extra)
            latents = scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
            if after_step is not None:
                latents = after_step(index, latents)
            if on_step is not None:
                on_step(StepInfo(index, total, int(t), latents, scheduler))
    return latents


def normalized_latents(info: StepInfo):
    """x_t rescaled to unit variance for viewing: sigma-based schedulers keep x_t at scale sqrt(1+sigma^2)."""
    sigmas = getattr(info.scheduler, "sigmas", None)
    step_index = getattr(info.scheduler, "step_index", None)
    if sigmas is None or step_index is None or step_index >= len(sigmas):
        return info.latents
    sigma = float(sigmas[step_index])
    return info.latents / (sigma**2 + 1) ** 0.5
