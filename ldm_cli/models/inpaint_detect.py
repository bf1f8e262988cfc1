"""Tell an inpainting checkpoint from a normal one without loading it, and load its UNet.

An SD1.5 inpainting UNet takes 9 input channels (4 latents + 1 mask + 4 masked-picture latents):
in a diffusers folder `unet/config.json` says so; in an A1111 single file (`sd-v1-5-inpainting`)
the first convolution `model.diffusion_model.input_blocks.0.0.weight` has shape [320, 9, 3, 3].
The bundled SD1.5 configs describe a 4-channel UNet, so for a 9-channel single file the UNet is
built from `assets/sd15/unet_inpainting/config.json` (the same UNet with in_channels 9), or from
the --config folder's UNet config with in_channels set to what the checkpoint has.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
INPAINTING_SUBFOLDER = "unet_inpainting"


def unet_in_channels(source) -> int | None:
    """The UNet's input channels, read from a folder's config or a single file's header; None if unknown."""
    path = getattr(source, "path", None)
    if path is None:
        return None
    if Path(path).is_dir():
        try:
            return int(json.loads((Path(path) / "unet" / "config.json").read_text())["in_channels"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # the loader names what is wrong with the folder
    return checkpoint_in_channels(Path(path))


def checkpoint_in_channels(path: Path) -> int | None:
    if path.suffix != ".safetensors":
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            if CONV_IN not in f.keys():
                return None
            return int(f.get_slice(CONV_IN).get_shape()[1])
    except Exception:  # a bad header: the loader reports it
        return None


def single_file_unet(path: Path, config_dir: Path, dtype, checkpoint=None) -> dict:
    """{'unet': UNet} for a checkpoint whose UNet input channels differ from config_dir's; else {}.

    `checkpoint` is the state dict to build it from (old names already fixed); the file itself by default."""
    channels = checkpoint_in_channels(path)
    configured = _configured_channels(config_dir / "unet")
    if channels is None or configured is None or channels == configured:
        return {}
    from diffusers import UNet2DConditionModel

    checkpoint = str(path) if checkpoint is None else checkpoint
    bundled = config_dir / INPAINTING_SUBFOLDER
    if _configured_channels(bundled) == channels:
        return {"unet": UNet2DConditionModel.from_single_file(
            checkpoint, config=str(config_dir), subfolder=INPAINTING_SUBFOLDER, local_files_only=True, dtype=dtype)}
    config = json.loads((config_dir / "unet" / "config.json").read_text())
    config["in_channels"] = channels
    with tempfile.TemporaryDirectory(prefix="ldm-unet-config-") as folder:
        (Path(folder) / "unet").mkdir()
        (Path(folder) / "unet" / "config.json").write_text(json.dumps(config))
        return {"unet": UNet2DConditionModel.from_single_file(
            checkpoint, config=folder, subfolder="unet", local_files_only=True, dtype=dtype)}


def _configured_channels(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "config.json").read_text())["in_channels"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
