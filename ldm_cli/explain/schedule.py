"""The model's noise schedule and what a sampler visits of it.

    beta_t            variance added at training step t (diffusers index t = 0..T-1 is Ho's t+1)
    abar_t            prod_{s<=t} (1 - beta_s): how much signal variance is left in x_t
    log-SNR(t)        log(abar_t / (1 - abar_t)); 0 where signal and noise are equally loud
    sigma_t           sqrt((1 - abar_t) / abar_t): the k-diffusion noise level of the same x_t

The sampler's timesteps are those `scheduler.set_timesteps(steps)` chooses for the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ScheduleView:
    scheduler: str
    steps: int
    betas: list[float]  # [T]
    alphas_cumprod: list[float]  # [T]
    timesteps: list[int]  # what the sampler visits, in order
    sigmas: list[float] | None  # the sampler's sigma list (sigma-based samplers), else None

    @property
    def log_snr(self) -> list[float]:
        return [math.log(a / (1 - a)) if 0 < a < 1 else (math.inf if a >= 1 else -math.inf) for a in self.alphas_cumprod]

    def to_json(self) -> dict:
        return {
            "scheduler": self.scheduler, "steps": self.steps, "num_train_timesteps": len(self.alphas_cumprod),
            "alphas_cumprod": self.alphas_cumprod, "betas": self.betas,
            "timesteps": self.timesteps, "sigmas": self.sigmas,
        }


def schedule_view(scheduler_name: str, model_scheduler_config: dict, steps: int) -> ScheduleView:
    """Build the named sampler from the model's config (as `ldm generate` does) and read its schedule."""
    from ldm_cli.pipeline.loop.schedulers import build_scheduler

    scheduler = build_scheduler(scheduler_name, model_scheduler_config)
    scheduler.set_timesteps(steps)
    sigmas = getattr(scheduler, "sigmas", None)
    return ScheduleView(
        scheduler=scheduler_name,
        steps=steps,
        betas=[float(b) for b in scheduler.betas],
        alphas_cumprod=[float(a) for a in scheduler.alphas_cumprod],
        timesteps=[int(t) for t in scheduler.timesteps],
        sigmas=[float(s) for s in sigmas] if sigmas is not None else None,
    )
