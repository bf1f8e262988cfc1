"""Seeded starting noise as A1111 draws it with "RNG: CPU": variation seeds and eta noise seed delta.

    noise   = randn(seed)                      on a CPU torch.Generator, shape [C, h, w]
    varied  = slerp(strength, noise, randn(variation seed))     (A1111's modules/rng.py)
    later noise (ancestral samplers' fresh noise each step) comes from the seed's generator,
    re-seeded to seed + ENSD when an eta noise seed delta is set
"""

from __future__ import annotations

import torch


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's slerp on [C, h, w] noise: norms over dim 1, a linear blend when nearly parallel.

    The near-parallel branch is A1111's own (low * val + high * (1 - val)), kept as it is.
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def seeded_noise(shape, generator: torch.Generator, dtype, variation_seed: int | None = None,
                 variation_strength: float = 0.0) -> torch.Tensor:
    """[1, C, h, w] noise from the seed's `generator`, slerped toward the variation seed's noise."""
    noise = torch.randn(shape, generator=generator, dtype=dtype)
    if variation_seed is None or variation_strength == 0:
        return noise
    other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(variation_seed), dtype=dtype)
    return slerp(variation_strength, noise[0], other[0]).unsqueeze(0)


def step_generator(generator: torch.Generator, seed: int, eta_noise_seed_delta: int) -> torch.Generator:
    """The generator a stochastic sampler draws its per-step noise from (A1111's ENSD re-seed)."""
    if not eta_noise_seed_delta:
        return generator
    return torch.Generator("cpu").manual_seed(seed + eta_noise_seed_delta)


def scheduler_step_kwargs(plan, generator: torch.Generator, seed: int) -> dict:
    """What scheduler.step gets besides the prediction, as diffusers' prepare_extra_step_kwargs passes it:
    the per-step noise generator of stochastic samplers, and TCD's gamma as `eta`."""
    from ldm_cli.pipeline.loop.schedulers import TCD_DEFAULT_GAMMA, spec_for

    kwargs = {}
    if spec_for(plan.scheduler).stochastic:
        kwargs["generator"] = step_generator(generator, seed, plan.eta_noise_seed_delta)
    if plan.scheduler == "tcd":
        kwargs["eta"] = TCD_DEFAULT_GAMMA if plan.tcd_gamma is None else plan.tcd_gamma
    return kwargs


def plan_noise(shape, generator: torch.Generator, dtype, device, plan) -> torch.Tensor:
    """The image's starting noise for a SamplingPlan: the seed's, slerped toward its variation seed's."""
    noise = seeded_noise(shape, generator, dtype, plan.variation_seed, plan.variation_strength)
    return noise.to(device)
