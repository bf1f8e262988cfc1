"""A Monte-Carlo estimate of the negative ELBO of an image's latents (Ho et al. 2020, eq. 5).

The bound, for x_0 = the VAE posterior mean x scaling_factor (d numbers), conditioned on a prompt c:

    -log p(x_0 | c) <= L_T + sum_{t=2..T} L_{t-1} + L_0

    L_T     = KL(q(x_T | x_0) || N(0, I))                                   exact, no network
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))                 reverse variance sigma_t^2 = beta_t
            = w_t E||eps - eps_theta(x_t, t, c)||^2 + C_t
              w_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) = beta_t / (2 alpha_t (1 - abar_t))
              C_t = d/2 (r_t - 1 - log r_t),  r_t = beta~_t / beta_t = (1 - abar_{t-1}) / (1 - abar_t)
    L_0     = -log N(x_0; mu_theta(x_1, 1), beta_1 I)                       a Gaussian decoder on x_0
            = w_1 ||eps - eps_theta(x_1, 1, c)||^2 + d/2 log(2 pi beta_1)   (the same w_t at t = 1)

The sum over t is estimated as T * E_{t ~ U{1..T}, eps} [w_t ||eps - eps_theta||^2] from N draws of
(t, eps); the C_t, L_T and L_0's constant are added exactly. The result is in nats; bits per
dimension divide by d ln 2. x_0 is continuous, so this bounds a density: it can be negative, and it
depends on the latent scale. The VAE's own term (-log p(x | z)) is not included.

Timestep indices here are diffusers' (0..T-1); index i is Ho's t = i + 1. Models that predict v or x_0
are turned into eps predictions first (`to_eps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BoundWeights:
    """The schedule's parts of the bound, float64, for diffusers indices 0..T-1."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    weights: torch.Tensor  # w_t
    constant_per_dim: float  # (sum_{t>=2} C_t + L_0's constant) / d

    @property
    def total(self) -> int:
        return len(self.betas)


def bound_weights(model_scheduler_config: dict) -> BoundWeights:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(dict(model_scheduler_config))
    betas = scheduler.betas.double()
    abar = torch.cumprod(1 - betas, dim=0)
    weights = betas / (2 * (1 - betas) * (1 - abar))
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    ratio = ((1 - abar_prev) / (1 - abar))[1:]  # r_t for Ho's t = 2..T
    c = 0.5 * (ratio - 1 - torch.log(ratio)).sum()
    decoder = 0.5 * math.log(2 * math.pi * float(betas[0]))
    return BoundWeights(betas, abar, weights, float(c) + decoder)


def prior_term(x0: torch.Tensor, abar_last: float) -> float:
    """L_T = KL(N(sqrt(abar_T) x_0, (1 - abar_T) I) || N(0, I)) in nats, summed over x_0's elements."""
    x = x0.double()
    var = 1 - abar_last
    return float(0.5 * (abar_last * x.pow(2) + var - 1 - math.log(var)).sum())


def to_eps(output: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The UNet's output as a noise prediction; abar broadcasts over [B, 1, 1, 1]."""
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":  # v = sqrt(abar) eps - sqrt(1-abar) x_0  =>  eps = sqrt(abar) v + sqrt(1-abar) x_t
        return abar.sqrt() * output + (1 - abar).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - abar.sqrt() * output) / (1 - abar).sqrt()
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def draw_noise(count: int, shape, total: int, seed: int):
    """`count` (t, eps) pairs, seeded on the CPU: t uniform in 0..T-1, eps ~ N(0, I) of x_0's shape."""
    generator = torch.Generator("cpu").manual_seed(seed)
    t = torch.randint(0, total, (count,), generator=generator)
    eps = torch.randn((count, *shape[1:]), generator=generator)
    return t, eps


def noise_errors(unet, x0, conds, t: int, eps, abar: float, prediction_type: str) -> torch.Tensor:
    """||eps - eps_theta(x_t, t, c)||^2 for each conditioning in `conds` [L, 77, D], the same x_t for all."""
    x_t = (abar**0.5 * x0 + (1 - abar) ** 0.5 * eps.to(x0.device)).expand(len(conds), *x0.shape[1:])  # [L, C, h, w]
    with torch.no_grad():
        out = unet(x_t.to(unet.dtype), torch.full((len(conds),), t, device=x0.device), encoder_hidden_states=conds,
                   return_dict=False)[0].float()
    eps_hat = to_eps(out, x_t, torch.tensor(abar, dtype=torch.float32, device=x0.device), prediction_type)
    return (eps_hat - eps.to(x0.device)).pow(2).flatten(1).sum(1).cpu().double()  # [L]


@dataclass
class ElboEstimate:
    bits_per_dim: float
    stderr: float  # of bits_per_dim, from the spread of the N samples
    samples: int
    dims: int
    prior_nats: float
    constant_nats: float
    per_timestep: list[dict]  # one per sample, sorted by t: t, mse (per dim), term_bits_per_dim (w_t x error / d ln 2)

    def to_json(self) -> dict:
        return {"bits_per_dim": self.bits_per_dim, "stderr": self.stderr, "samples": self.samples, "dims": self.dims,
                "prior_term_bits_per_dim": self.prior_nats / (self.dims * math.log(2)),
                "constant_bits_per_dim": self.constant_nats / (self.dims * math.log(2)),
                "per_timestep": self.per_timestep}


def summarise(errors: torch.Tensor, t: torch.Tensor, bound: BoundWeights, x0: torch.Tensor) -> ElboEstimate:
    """Errors [N] at timesteps t [N] -> the bound's estimate with its standard error."""
    dims = x0.numel()
    weighted = bound.weights[t] * errors  # w_t ||eps - eps_theta||^2, nats
    terms = bound.total * weighted  # unbiased for sum_t L_{t-1} minus the constants
    prior = prior_term(x0, float(bound.alphas_cumprod[-1]))
    constant = bound.constant_per_dim * dims
    nats = float(terms.mean()) + prior + constant
    scale = dims * math.log(2)
    stderr = float(terms.std(unbiased=True)) / math.sqrt(len(terms)) if len(terms) > 1 else float("nan")
    order = torch.argsort(t)
    per_timestep = [{"t": int(t[i]), "mse": float(errors[i]) / dims, "term_bits_per_dim": float(weighted[i]) / scale}
                    for i in order]
    return ElboEstimate(nats / scale, stderr / scale, len(terms), dims, prior, constant, per_timestep)


def estimate(unet, x0, cond, bound: BoundWeights, prediction_type: str, samples: int, seed: int,
             on_sample=None) -> ElboEstimate:
    """The negative ELBO of x_0 [1, C, h, w] under conditioning cond [1, 77, D], from `samples` draws."""
    t, eps = draw_noise(samples, x0.shape, bound.total, seed)
    errors = torch.empty(samples, dtype=torch.float64)
    for i in range(samples):
        errors[i] = noise_errors(unet, x0, cond, int(t[i]), eps[i : i + 1], float(bound.alphas_cumprod[t[i]]),
                                 prediction_type)[0]
        if on_sample is not None:
            on_sample(i)
    return summarise(errors, t, bound, x0)
