"""What every explain command needs first: the model on a device, and an image as scaled latents."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ldm_cli.pipeline.config import ModelSettings


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class LoadedModel:
    components: object  # ldm_cli.models.loading.Components
    device: str
    dtype: object


def load_model(m: ModelSettings) -> LoadedModel:
    """Load --model the way `ldm generate` does (no LoRA, no fast paths)."""
    from ldm_cli.models.devices import resolve_device, resolve_dtype
    from ldm_cli.models.loading import load_components, resolve_source

    source = resolve_source(m.model, m.revision)
    device = resolve_device(m.device)
    dtype = resolve_dtype(m.dtype, device)
    say(f"loading {source.spec} on {device}")
    components = load_components(source, device, dtype, offline=m.offline, allow_pickle=m.allow_pickle,
                                 single_file_config=m.config)
    return LoadedModel(components, device, dtype)


def read_pixels(path: Path, size: int | None = None):
    """IMAGE -> pixels [H, W, 3] uint8 (own size rounded to a multiple of 8, or cropped to size x size).

    Called before the model loads, so an unreadable image costs nothing."""
    from ldm_cli.files.image_io import SizePolicy, load_image

    loaded = load_image(path, SizePolicy(size, size) if size else SizePolicy())
    if loaded.notes:
        say(f"{path}: {loaded.describe()}")
    return loaded.pixels


def encode_pixels(model: LoadedModel, pixels):
    """pixels -> x_0 = posterior mean x scaling_factor [1, C, H/8, W/8], float32."""
    from ldm_cli.files.image_io import to_tensor
    from ldm_cli.pipeline.codec.vae_ops import encode

    return encode(model.components.vae, to_tensor(pixels)).latents.float()


def image_latents(model: LoadedModel, path: Path, size: int | None = None):
    """IMAGE -> (pixels [H, W, 3] uint8, x_0 [1, C, H/8, W/8])."""
    pixels = read_pixels(path, size)
    return pixels, encode_pixels(model, pixels)


def check_image_arg(path: Path, flag: str = "IMAGE") -> None:
    """Before any model loads: the image file exists and is a file."""
    from ldm_cli.errors import UsageError

    if not path.exists():
        raise UsageError(f"{flag} {path}: no such file")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; pass one image file")
