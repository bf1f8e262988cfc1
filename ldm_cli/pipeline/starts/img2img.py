"""Image -> image by SDEdit (Meng et al. 2022): noise an encoded picture part of the way, then denoise.

    1. the start: encode --init-image with a posterior sample from the image's seeded generator
       (as diffusers' StableDiffusionImg2ImgPipeline does), x scaling_factor    [1, 4, H/8, W/8]
       or take --init-latents as written by `ldm encode` (already scaled)
    2. a fresh scheduler with all `steps` timesteps; keep the last int(steps * strength) of them,
       from index t_start * scheduler.order (set_begin_index, so sigma schedulers index from there)
    3. x_t = scheduler.add_noise(x_0, noise, first kept timestep), noise from the same generator
    4. denoise the kept timesteps with guidance (sampling.denoise)
    5. decode with the VAE

Strength 1 starts from (almost) pure noise; small strengths keep the picture and change details.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ldm_cli.pipeline.config import DEFAULT_STRENGTH
from ldm_cli.errors import UsageError
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.pipeline.starts.start import InitStart


@dataclass
class InitSource:
    """Where img2img starts, read and checked before any model loads."""

    path: Path
    strength: float
    image: object | None = None  # image_io.LoadedImage for --init-image
    latent_file: object | None = None  # latent_files.LatentFile for --init-latents

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels of the result."""
        return self.image.size if self.image is not None else self.latent_file.pixel_size

    def record(self) -> dict:
        if self.image is not None:
            return {"init_image": str(self.path.resolve()), "sha256": self.image.sha256, "strength": self.strength,
                    "size": list(self.size), "preprocessing": self.image.notes}
        header = self.latent_file.header
        return {"init_latents": str(self.path.resolve()), "strength": self.strength, "size": list(self.size),
                "source_sha256": header.source_sha256 if header else None}


def load_init(settings) -> InitSource | None:
    """Read --init-image (with the size policy) or --init-latents; None for plain text-to-image."""
    if settings.init_image is None and settings.init_latents is None:
        return None
    strength = settings.strength if settings.strength is not None else default_strength(settings)
    if settings.init_image is not None:
        from ldm_cli.files.image_io import SizePolicy, load_image

        policy = SizePolicy(settings.height, settings.width, settings.resize or "crop")
        image = load_image(settings.init_image, policy)
        _check_size(settings.init_image, image.size)
        return InitSource(settings.init_image, strength, image=image)
    from ldm_cli.files.latent_files import load_latents

    latent_file = load_latents(settings.init_latents, settings.model.allow_pickle)
    width, height = latent_file.pixel_size
    for flag, wanted, actual in (("--height", settings.height, height), ("--width", settings.width, width)):
        if wanted is not None and wanted != actual:
            raise UsageError(f"{flag} {wanted}: --init-latents fixes the size to {width}x{height}; drop {flag}")
    return InitSource(settings.init_latents, strength, latent_file=latent_file)


def default_strength(settings) -> float:
    """0.75 for img2img; 1.0 when a mask (or --outpaint) says where to repaint."""
    masked = getattr(settings, "mask", None) is not None or getattr(settings, "outpaint", None)
    return 1.0 if masked else DEFAULT_STRENGTH


def _check_size(path: Path, size: tuple[int, int]) -> None:
    from ldm_cli.pipeline.config import MAX_SIZE, MIN_SIZE

    if not all(MIN_SIZE <= side <= MAX_SIZE for side in size):
        raise UsageError(
            f"--init-image {path}: {size[0]}x{size[1]} after rounding is outside {MIN_SIZE}..{MAX_SIZE} pixels a side; "
            "pass --dim/--height/--width (with --resize crop|pad|stretch) to resize it"
        )


def fit_plan(plan: SamplingPlan, init: InitSource | None) -> SamplingPlan:
    """The image's size wins over the model's native size."""
    if init is None:
        return plan
    width, height = init.size
    return replace(plan, height=height, width=width)


def make_generator(components, device, dtype, init: InitSource | None, vae_hash: str | None = None) -> TextToImage:
    if init is None:
        return TextToImage(components, device, dtype)
    return ImageToImage(components, device, dtype, init, vae_hash)


class ImageToImage(TextToImage):
    """TextToImage's conditioning and loop, started from a noised encoding of the init image
    (the starting-point logic lives in pipeline/starts/start.py's InitStart)."""

    def __init__(self, components, device, dtype, init: InitSource, vae_hash: str | None = None):
        start = InitStart(init)
        start.prepare(components, vae_hash)
        super().__init__(components, device, dtype, start)
        self.init = init

    def start_latents(self, generator) -> torch.Tensor:
        """x_0 in the UNet's space: a seeded posterior sample of the image, or the given latents."""
        return self.start.start_latents(self.components, self.device, self.dtype, generator)
