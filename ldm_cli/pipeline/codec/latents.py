"""VAE decoding of latents to pixels (with a NaN guard) and the cheap latent->RGB preview."""

from __future__ import annotations

import numpy as np
import torch

from ldm_cli.errors import GenerationError


SANE_LATENT_PEAK = 1000.0  # scaled SD latents stay within about +-10; 1000 is far beyond any real encoding


def unscale(vae, latents):
    """Latents live in the diffusion model's space (x * scaling_factor); the VAE wants them back."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return latents / vae.config.scaling_factor + shift


def decode(vae, latents) -> torch.Tensor:
    """Latents [B,4,h,w] -> images [B,3,8h,8w] as float32 in [0,1].

    If the VAE's precision overflows (NaN/inf, the classic fp16 SD-VAE failure), decode again in
    float32; if that fails too, refuse rather than write a black image.
    """
    if not torch.isfinite(latents).all():
        raise GenerationError("the sampler produced NaN/inf latents; try --dtype fp32 or another --scheduler")
    with torch.no_grad():
        pixels = vae.decode(unscale(vae, latents.to(vae.dtype)), return_dict=False)[0]
        if not torch.isfinite(pixels).all() and vae.dtype != torch.float32:
            pixels = _decode_in_float32(vae, latents)
    if not torch.isfinite(pixels).all():
        peak = float(latents.abs().max())
        if peak > SANE_LATENT_PEAK:  # the input is to blame, not the weights
            raise GenerationError(f"the latents reach {peak:.3g}, far beyond what a VAE works with (|value| below "
                                  f"~{SANE_LATENT_PEAK:g}), so the VAE decoded NaN/inf; they were scaled wrongly")
        raise GenerationError("the VAE decoded NaN/inf pixels even in float32 from ordinary latents; "
                              "the VAE weights may be corrupt")
    return (pixels.float() / 2 + 0.5).clamp(0, 1)


def _decode_in_float32(vae, latents):
    original = vae.dtype
    vae.to(torch.float32)
    try:
        return vae.decode(unscale(vae, latents.float()), return_dict=False)[0]
    finally:
        vae.to(original)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] floats in [0,1] -> [B,H,W,3] uint8, rounding as diffusers does."""
    array = images.detach().cpu().permute(0, 2, 3, 1).float().numpy()
    return (array * 255).round().astype("uint8")


def fit_preview_map(vae) -> torch.Tensor:
    """Fit a 5x3 affine map from scaled latents to RGB for this VAE (the "approx cheap" preview).

    We encode a small synthetic image of colour patches and gradients, then solve least squares
    between each latent pixel and the mean colour of the 8x8 block it came from.
    """
    scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    image = _calibration_image(16 * scale_factor)  # 16x16 latent pixels are plenty for 15 unknowns
    with torch.no_grad():
        dist = vae.encode(image.to(vae.device, vae.dtype)).latent_dist
        latents = dist.mean.float() * vae.config.scaling_factor  # [1,4,h,w]
    factor = image.shape[-1] // latents.shape[-1]
    target = torch.nn.functional.avg_pool2d(image, factor)  # [1,3,h,w] in [-1,1]
    x = latents.flatten(2).squeeze(0).T.cpu()  # [h*w, 4]
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1)  # affine: add a bias column
    y = target.flatten(2).squeeze(0).T
    return torch.linalg.lstsq(x, y).solution  # [5, 3]


def _calibration_image(size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    blocks = torch.rand(1, 3, 8, 8, generator=generator) * 2 - 1
    image = torch.nn.functional.interpolate(blocks, size=(size, size), mode="nearest")
    ramp = torch.linspace(-1, 1, size)
    image[:, 0, : size // 4] = ramp  # a few smooth gradients so the fit sees more than flat patches
    image[:, 2, :, : size // 4] = ramp[:, None]
    return image


def preview(latents: torch.Tensor, preview_map: torch.Tensor, scale: int) -> np.ndarray:
    """Latents [1,4,h,w] -> an RGB uint8 preview [h*scale, w*scale, 3] without running the VAE."""
    x = latents[0].float().cpu().flatten(1).T  # [h*w, 4]
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    rgb = (x @ preview_map).T.reshape(3, *latents.shape[-2:])
    rgb = ((rgb / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    rgb = rgb.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return rgb.permute(1, 2, 0).numpy()
