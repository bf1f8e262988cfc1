"""`ldm demo-data` (the synthetic shapes data set) and `ldm train-vae` (train an AutoencoderKL)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DATA_EXAMPLES = """Examples:

  ldm demo-data shapes/ --count 2000 --seed 0

  ldm train-vae shapes/ -o my-vae/ --steps 2000
"""
VAE_EXAMPLES = """Examples:

  ldm demo-data shapes/ --count 2000

  ldm train-vae shapes/ -o my-vae/ --steps 2000 --kl-weight 1e-6

  ldm train-vae photos/ -o my-vae/ --crop 64 --batch 8   # an interrupted run resumes from my-vae/
"""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def register(app: typer.Typer) -> None:
    app.command("demo-data", help="Write the demo model's synthetic captioned shapes (PNGs + metadata.jsonl).",
                epilog=DATA_EXAMPLES)(demo_data)
    app.command("train-vae", help="Train a small AutoencoderKL (ELBO: reconstruction + weighted KL) on a folder of images.",
                epilog=VAE_EXAMPLES)(train_vae)


def demo_data(
    out: Annotated[Path, typer.Argument(help="New (or empty) folder to write into.", show_default=False)],
    count: Annotated[int, typer.Option("--count", "-n", help="Number of images, 1..1000000.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the scene and caption draw (same seed, same data).")] = 0,
) -> int:
    from ldm_cli.errors import UsageError

    if not 1 <= count <= 1_000_000:
        raise UsageError(f"--count {count}: must be 1..1000000")
    _check_new_folder(out, "OUT")
    from ldm_cli.demo.shapes import write_dataset

    write_dataset(out, count, seed)
    print(f"wrote {count} images and metadata.jsonl to {out}")
    return 0


def train_vae(
    data: Annotated[Path, typer.Argument(help="Folder of images (metadata.jsonl optional), all the same size.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained VAE (diffusers format); resumes a run there.", show_default=False)],
    steps: Annotated[int, typer.Option("--steps", help="Steps on random crops.")] = 1000,
    full_steps: Annotated[int, typer.Option("--full-steps", help="Final steps on whole images (settles GroupNorm statistics).")] = 100,
    crop: Annotated[int, typer.Option("--crop", help="Crop side in pixels, a multiple of 8.")] = 32,
    batch: Annotated[int, typer.Option("--batch", help="Crops per step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (warm-up, then cosine decay).")] = 2e-3,
    kl_weight: Annotated[float, typer.Option("--kl-weight", help="Weight of the KL term of the ELBO.")] = 1e-6,
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation and batches.")] = 1,
) -> int:
    import dataclasses

    from ldm_cli.demo.recipe import RECIPE
    from ldm_cli.errors import UsageError

    for flag, value in (("--steps", steps), ("--full-steps", full_steps)):
        if value < 0:
            raise UsageError(f"{flag} {value}: must be >= 0")
    if steps + full_steps == 0:
        raise UsageError("--steps and --full-steps are both 0; nothing to train")
    if crop < 8 or crop % 8:
        raise UsageError(f"--crop {crop}: must be a multiple of 8, at least 8")
    if batch < 1:
        raise UsageError(f"--batch {batch}: must be >= 1")
    if not lr > 0:
        raise UsageError(f"--lr {lr}: must be > 0")
    if kl_weight < 0:
        raise UsageError(f"--kl-weight {kl_weight}: must be >= 0")
    if (out / "config.json").exists():
        raise UsageError(f"--out {out}: already holds a trained VAE; pass a new folder (nothing is overwritten)")
    images = load_image_folder(data, crop)
    recipe = dataclasses.replace(
        RECIPE.vae, crop=crop, crop_batch=batch, crop_steps=steps, full_steps=full_steps, lr=lr,
        warmup=min(RECIPE.vae.warmup, max(1, (steps + full_steps) // 10)), kl_weight=kl_weight, seed=seed,
    )
    _fit(images, out, recipe)
    return 0


def _fit(images, out: Path, recipe) -> None:
    import sys

    from ldm_cli.demo import train_vae as training

    vae = training.train_vae(images, out, recipe, log=lambda m: print(m, file=sys.stderr, flush=True))
    scale = training.latent_scale(vae, images[:2000])
    psnr = training.round_trip_psnr(vae, images[:64])
    training.save_vae(vae, out, scale)
    (out / training.CHECKPOINT).unlink(missing_ok=True)
    print(f"saved VAE to {out}  scaling_factor {scale:.4f}  round-trip PSNR {psnr:.2f} dB on {min(64, len(images))} images")


def load_image_folder(folder: Path, crop: int):
    """All images of a folder as uint8 [N, H, W, 3]; one-line errors for what cannot be trained on."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from ldm_cli.errors import InputFileError, UsageError

    if not folder.is_dir():
        raise UsageError(f"DATA {folder}: not a folder; pass a folder of images (e.g. from `ldm demo-data`)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"DATA {folder}: no images ({', '.join(IMAGE_SUFFIXES)}); make some with `ldm demo-data {folder}`")
    import warnings

    arrays = []
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    arrays.append(np.asarray(image.convert("RGB")))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputFileError(f"{path}: refusing a possible decompression bomb (it claims over "
                                 f"{Image.MAX_IMAGE_PIXELS // 10**6} megapixels); remove or replace it") from None
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            raise InputFileError(f"{path}: not a readable image; remove or replace it") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputFileError(f"DATA {folder}: images differ in size ({len(shapes)} sizes); resize them to one size")
    height, width, _ = arrays[0].shape
    if height % 8 or width % 8 or min(height, width) < crop:
        raise InputFileError(f"DATA {folder}: images are {width}x{height}; need sides that are multiples of 8 and >= --crop {crop}")
    return np.stack(arrays)


def _check_new_folder(path: Path, name: str) -> None:
    from ldm_cli.errors import UsageError

    if path.exists() and not path.is_dir():
        raise UsageError(f"{name} {path}: is a file; pass a new folder")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"{name} {path}: folder is not empty; pass a new folder (nothing is overwritten)")
