"""What the 48x compression costs: PSNR and SSIM between an image and its VAE reconstruction,
and the classic picture of the latent channels side by side.
"""

from __future__ import annotations

import math

import numpy as np

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
K1, K2, PEAK = 0.01, 0.03, 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images; inf when they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(PEAK**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004) of two [H, W, 3] uint8 images.

    Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, computed per RGB channel over the
    positions where the window fits ("valid", as the paper's reference code), then averaged.
    """
    import torch

    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1).unsqueeze(1)  # [3, 1, H, W]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1).unsqueeze(1)
    size = min(SSIM_WINDOW, x.shape[-1], x.shape[-2])
    window = _gaussian_window(size).to(x)

    def blur(t):
        return torch.nn.functional.conv2d(t, window)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (K1 * PEAK) ** 2, (K2 * PEAK) ** 2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(score.mean())


def _gaussian_window(size: int):
    import torch

    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # [1, 1, size, size]


def channel_picture(latents, scale: int = 8, gap: int = 4) -> np.ndarray:
    """Latents [1, C, h, w] -> [h*scale, C*(w*scale+gap)-gap, 3] uint8: each channel a grey map
    stretched to its own min..max, side by side on white."""
    channels = latents[0].float().cpu().numpy()
    h, w = channels.shape[-2:]
    tile_w = w * scale
    strip = np.full((h * scale, len(channels) * (tile_w + gap) - gap), 255, dtype=np.uint8)
    for i, channel in enumerate(channels):
        low, high = float(channel.min()), float(channel.max())
        grey = (channel - low) / (high - low) if high > low else np.zeros_like(channel)
        grey = np.round(grey * 255).astype(np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)
        strip[:, i * (tile_w + gap) : i * (tile_w + gap) + tile_w] = grey
    return np.repeat(strip[:, :, None], 3, axis=2)
