"""The forward process in closed form: q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I).

x_0 is the VAE's posterior mean times scaling_factor; every x_t is drawn with the same eps, so the
row shows one path from the image to noise. SNR(t) = abar_t / (1 - abar_t).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_TIMESTEPS = (0, 100, 250, 500, 750, 900, 999)


@dataclass
class NoisedLatents:
    t: int
    abar: float
    latents: torch.Tensor  # [1, C, h, w]

    @property
    def snr(self) -> float:
        return self.abar / (1 - self.abar) if self.abar < 1 else float("inf")


def alphas_cumprod(model_scheduler_config: dict) -> torch.Tensor:
    """abar_t for t = 0..T-1 (float64), from the model's own training schedule."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(dict(model_scheduler_config)).alphas_cumprod.double()


def q_sample(x0: torch.Tensor, abar: float, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    return abar**0.5 * x0 + (1 - abar) ** 0.5 * eps


def forward_process(x0: torch.Tensor, abars: torch.Tensor, timesteps, seed: int) -> list[NoisedLatents]:
    """x_t for each t, all from one eps drawn with `seed` (CPU generator: same on every device)."""
    eps = torch.randn(x0.shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
    eps = eps.to(x0.device)
    return [NoisedLatents(int(t), float(abars[t]), q_sample(x0, float(abars[t]), eps)) for t in timesteps]


def parse_timesteps(text: str, total: int | None = None) -> tuple[int, ...]:
    """'--t 0,100,500' -> (0, 100, 500); each in 0..T-1 (T unknown before the model loads: only >= 0)."""
    from ldm_cli.errors import UsageError

    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--t {text!r}: give whole timesteps separated by commas, e.g. --t 0,250,500,999") from None
    if not values:
        raise UsageError("--t is empty; give timesteps separated by commas, e.g. --t 0,250,500,999")
    if len(values) > 16:
        raise UsageError(f"--t: {len(values)} timesteps; give at most 16")
    bad = [v for v in values if v < 0 or (total is not None and v >= total)]
    if bad:
        top = f"{total - 1} (the model's num_train_timesteps - 1)" if total is not None else "T-1"
        raise UsageError(f"--t {bad[0]}: timesteps run from 0 to {top}")
    return values
