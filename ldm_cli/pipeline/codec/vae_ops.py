"""The VAE as a tool: encode pixels to scaled latents (posterior mean or a seeded sample), the KL of
the posterior to N(0, I), and tiling for large images.

The VAE's encoder gives a diagonal Gaussian posterior q(z|x) = N(mu, sigma^2) per latent element
(Kingma & Welling 2014). Latent diffusion keeps z = (mu or a sample) * scaling_factor, which brings
the latents to roughly unit variance for the UNet (Rombach et al. 2022, section 4.3.2).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ldm_cli.pipeline.codec import latents as latent_ops

AUTO_TILE_SIDE = 2  # tile automatically above (2 x the VAE's tile size)^2 pixels: 1024^2 for SD's 512 tiles


@dataclass
class Encoding:
    latents: torch.Tensor  # [1, C, H/8, W/8], scaled into the UNet's space
    kl: float  # KL(q(z|x) || N(0, I)) in nats, summed over the latent elements
    kind: str  # "mean" | "sample"
    tiled: bool


def tile_size(vae) -> int:
    """The pixel tile diffusers' tiled VAE works in (the VAE's config sample_size)."""
    return int(vae.tile_sample_min_size)


def should_tile(vae, height: int, width: int, tile: bool | None = None) -> bool:
    """--tile / --no-tile win; otherwise tile when the image is larger than (2 tiles)^2 pixels."""
    if tile is not None:
        return tile
    side = AUTO_TILE_SIDE * tile_size(vae)
    return height * width > side * side


@contextmanager
def tiling(vae, enabled: bool):
    """Turn diffusers' tiled encode/decode on for a block, and restore the VAE's setting after it."""
    before = getattr(vae, "use_tiling", False)
    vae.use_tiling = enabled
    try:
        yield
    finally:
        vae.use_tiling = before


def scale(vae, z: torch.Tensor) -> torch.Tensor:
    """VAE latents -> the diffusion model's space; the inverse of latents.unscale."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (z - shift) * vae.config.scaling_factor


def posterior(vae, pixels: torch.Tensor, tiled: bool = False):
    """pixels [1, 3, H, W] in [-1, 1] -> the diagonal Gaussian q(z|x) over [1, C, H/8, W/8]."""
    with torch.no_grad(), tiling(vae, tiled):
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        if not torch.isfinite(dist.mean).all() and vae.dtype != torch.float32:
            dist = _posterior_in_float32(vae, pixels)
    return dist


def _posterior_in_float32(vae, pixels):
    original = vae.dtype
    vae.to(torch.float32)
    try:
        return vae.encode(pixels.to(vae.device, torch.float32)).latent_dist
    finally:
        vae.to(original)


def encode(vae, pixels: torch.Tensor, *, sample: bool = False, generator=None, tile: bool | None = None) -> Encoding:
    """Encode to scaled latents: the posterior mean (deterministic) or a sample drawn with `generator`.

    A sample is drawn exactly as diffusers' img2img pipeline draws it (`latent_dist.sample(generator)`),
    so the same generator gives the same latents.
    """
    tiled = should_tile(vae, pixels.shape[-2], pixels.shape[-1], tile)
    dist = posterior(vae, pixels, tiled)
    z = dist.sample(generator) if sample else dist.mode()
    kl = float(dist.kl().float().sum())  # 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)
    return Encoding(scale(vae, z), kl, "sample" if sample else "mean", tiled)


def decode(vae, latents: torch.Tensor, tile: bool | None = None) -> tuple[torch.Tensor, bool]:
    """Scaled latents -> images [1, 3, H, W] in [0, 1], tiled when asked or when large; says if it tiled."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    tiled = should_tile(vae, latents.shape[-2] * factor, latents.shape[-1] * factor, tile)
    with tiling(vae, tiled):
        return latent_ops.decode(vae, latents), tiled


def channel_stats(latents: torch.Tensor) -> list[tuple[float, float]]:
    """(mean, std) of each latent channel."""
    flat = latents[0].float().flatten(1)  # [C, h*w]
    return [(float(m), float(s)) for m, s in zip(flat.mean(1), flat.std(1, unbiased=False))]
