"""DDPM's training objective (Ho et al. 2020, Algorithm 1), following the model's prediction type.

    x0 = vae.encode(image) * scaling_factor         (done once, cached)
    t ~ U{0..T-1},  eps ~ N(0, I)
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps    (scheduler.add_noise)
    loss = || target - unet(x_t, t, text) ||^2       target = eps, or v = sqrt(abar_t) eps - sqrt(1-abar_t) x0

Options: min-SNR-gamma weighting (Hang et al. 2023) and offset noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_noise(latents: torch.Tensor, generator: torch.Generator | None, noise_offset: float = 0.0) -> torch.Tensor:
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device, latents.dtype)
    if noise_offset:
        # A per-channel constant shift teaches the model to change overall brightness (offset noise).
        shift = torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=generator).to(latents)
        noise = noise + noise_offset * shift
    return noise


def sample_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.randint(0, num_train_timesteps, (batch,), generator=generator).to(device)


def training_target(scheduler, latents, noise, timesteps) -> torch.Tensor:
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction_type {kind!r} (expected epsilon or v_prediction)")


def snr(scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio abar_t / (1 - abar_t) of each timestep."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas_cumprod / (1 - alphas_cumprod)


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights min(SNR, gamma) / SNR (epsilon) or / (SNR + 1) (v-prediction)."""
    ratio = snr(scheduler, timesteps)
    clipped = torch.minimum(ratio, torch.full_like(ratio, gamma))
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (ratio + 1)
    return clipped / ratio


def diffusion_loss(
    unet,
    scheduler,
    latents: torch.Tensor,
    text_embeddings: torch.Tensor,
    generator: torch.Generator | None = None,
    snr_gamma: float | None = None,
    noise_offset: float = 0.0,
) -> torch.Tensor:
    """One batch of Algorithm 1: noise the latents at random timesteps and regress the target."""
    noise = sample_noise(latents, generator, noise_offset)
    timesteps = sample_timesteps(latents.shape[0], scheduler.config.num_train_timesteps, generator, latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, encoder_hidden_states=text_embeddings, return_dict=False)[0]
    target = training_target(scheduler, latents, noise, timesteps)
    if snr_gamma is None:
        return F.mse_loss(prediction.float(), target.float())
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * min_snr_weights(scheduler, timesteps, snr_gamma)).mean()
