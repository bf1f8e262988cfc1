"""Train a small AutoencoderKL with its ELBO objective, resumably.

    z ~ q(z|x) = N(mu(x), sigma(x)^2)                       (encoder, reparameterised sample)
    loss = ||decoder(z) - x||^2 + beta * KL(q(z|x) || N(0, I))   (Kingma & Welling 2014; beta small, as in LDM)

Every step draws its batch from a generator seeded by (seed, step), so a run resumed from a
checkpoint continues exactly as an uninterrupted one would. Run it with `ldm train-vae DATA -o OUT`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ldm_cli.demo.checkpoints import load_checkpoint, save_checkpoint
from ldm_cli.demo.recipe import VaeRecipe

CHECKPOINT = "vae-checkpoint.pt"
DECODER_CHECKPOINT = "decoder-checkpoint.pt"


def build_vae(recipe: VaeRecipe, sample_size: int = 128):
    from diffusers import AutoencoderKL

    n = len(recipe.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=recipe.block_out_channels,
        layers_per_block=recipe.layers_per_block,
        latent_channels=recipe.latent_channels,
        norm_num_groups=recipe.norm_num_groups,
        sample_size=sample_size,
    )


def learning_rate(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def to_pixels(batch: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 127.5 - 1


def vae_batch(images: np.ndarray, recipe: VaeRecipe, step: int) -> tuple[torch.Tensor, torch.Generator]:
    """The batch of step `step`: random crops for most steps, whole images at the end."""
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
    full = step >= recipe.crop_steps
    size = images.shape[1] if full else recipe.crop
    batch = recipe.full_batch if full else recipe.crop_batch
    index = torch.randint(0, len(images), (batch,), generator=generator).numpy()
    ys = torch.randint(0, images.shape[1] - size + 1, (batch,), generator=generator).tolist()
    xs = torch.randint(0, images.shape[2] - size + 1, (batch,), generator=generator).tolist()
    crops = np.stack([images[i, y : y + size, x : x + size] for i, y, x in zip(index, ys, xs)])
    return to_pixels(crops), generator


def elbo_loss(vae, pixels: torch.Tensor, kl_weight: float, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    posterior = vae.encode(pixels).latent_dist
    reconstruction = vae.decode(posterior.sample(generator=generator)).sample
    mse = torch.mean((reconstruction - pixels) ** 2)
    kl = posterior.kl().mean() / pixels[0].numel()  # per pixel, like the reconstruction term
    return mse + kl_weight * kl, mse.item()


def train_vae(
    images: np.ndarray,
    work_dir: Path,
    recipe: VaeRecipe = VaeRecipe(),
    checkpoint_seconds: float = 180,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
):
    """Train (or resume) the VAE on uint8 images [N, H, W, 3]; returns the trained model.

    stop_after: checkpoint and return at this step (a time-boxed or interrupted run; call again to resume).
    """
    work_dir = Path(work_dir)
    torch.manual_seed(recipe.seed)
    vae = build_vae(recipe, images.shape[1])
    optimizer = torch.optim.AdamW(vae.parameters(), lr=recipe.lr, weight_decay=0.0)
    step = load_checkpoint(work_dir / CHECKPOINT, vae, optimizer, log)
    vae.train()
    last_save, started, running = time.monotonic(), time.monotonic(), None
    last = recipe.steps if stop_after is None else min(stop_after, recipe.steps)
    while step < last:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe.lr, recipe.warmup, recipe.steps)
        pixels, generator = vae_batch(images, recipe, step)
        loss, mse = elbo_loss(vae, pixels, recipe.kl_weight, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        step += 1
        running = mse if running is None else 0.95 * running + 0.05 * mse
        if step % 25 == 0 or step == recipe.steps:
            psnr = 10 * math.log10(4 / max(running, 1e-12))  # pixels span [-1, 1]
            log(f"vae step {step}/{recipe.steps} mse {running:.5f} (~{psnr:.1f} dB) {time.monotonic() - started:.0f}s")
        if time.monotonic() - last_save > checkpoint_seconds or step == last:
            save_checkpoint(work_dir / CHECKPOINT, vae, optimizer, step)
            last_save = time.monotonic()
    return vae.eval()


def polish_decoder(
    vae, images: np.ndarray, work_dir: Path, recipe: VaeRecipe = VaeRecipe(), checkpoint_seconds: float = 180,
    log: Callable[[str], None] = print,
):
    """Fine-tune the decoder alone on whole images, x ~ decoder(mean of q(z|x)); the encoder is frozen,
    so latents (and a diffusion model trained on them) are unchanged while reconstructions sharpen."""
    work_dir = Path(work_dir)
    vae.requires_grad_(False)
    trainable = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=recipe.decoder_lr, weight_decay=0.0)
    step = load_checkpoint(work_dir / DECODER_CHECKPOINT, vae, optimizer, log)
    vae.train()
    last_save, started = time.monotonic(), time.monotonic()
    while step < recipe.decoder_steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe.decoder_lr, recipe.warmup, recipe.decoder_steps)
        generator = torch.Generator().manual_seed(recipe.seed * 2_000_003 + step)
        index = torch.randint(0, len(images), (recipe.decoder_batch,), generator=generator).numpy()
        pixels = to_pixels(images[index])
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mode()
        mse = torch.mean((vae.decode(latents).sample - pixels) ** 2)
        optimizer.zero_grad(set_to_none=True)
        mse.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0 or step == recipe.decoder_steps:
            log(f"decoder step {step}/{recipe.decoder_steps} mse {mse.item():.5f} {time.monotonic() - started:.0f}s")
        if time.monotonic() - last_save > checkpoint_seconds or step == recipe.decoder_steps:
            save_checkpoint(work_dir / DECODER_CHECKPOINT, vae, optimizer, step)
            last_save = time.monotonic()
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def latent_scale(vae, images: np.ndarray, batch: int = 32) -> float:
    """1 / std of the training latents (posterior means), so scaled latents have unit variance."""
    means = [vae.encode(to_pixels(images[i : i + batch])).latent_dist.mean for i in range(0, len(images), batch)]
    return float(1.0 / torch.cat(means).std())


@torch.no_grad()
def encode_all(vae, images: np.ndarray, batch: int = 32) -> torch.Tensor:
    """Posterior means of every image, unscaled: [N, 4, H/8, W/8]."""
    return torch.cat([vae.encode(to_pixels(images[i : i + batch])).latent_dist.mean for i in range(0, len(images), batch)])


@torch.no_grad()
def round_trip_psnr(vae, images: np.ndarray, batch: int = 16) -> float:
    """Mean PSNR (dB, 8-bit pixels) of encode -> decode over images, posterior mode as `ldm encode` uses."""
    values = []
    for i in range(0, len(images), batch):
        pixels = to_pixels(images[i : i + batch])
        decoded = vae.decode(vae.encode(pixels).latent_dist.mode()).sample
        out = ((decoded / 2 + 0.5).clamp(0, 1) * 255).round()
        ref = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float()
        mse = ((out - ref) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
        values.extend((10 * torch.log10(255**2 / mse)).tolist())
    return float(np.mean(values))


def save_vae(vae, folder: Path, scaling_factor: float) -> Path:
    vae.register_to_config(scaling_factor=scaling_factor)
    vae.save_pretrained(folder)
    return Path(folder)
