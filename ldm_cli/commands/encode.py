"""`ldm encode` (images -> latents) and `ldm decode` (latents -> images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldm_cli.models.devices import check_device_and_dtype
from ldm_cli.options import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OfflineOpt, RevisionOpt, VaeOpt

ENCODE_EXAMPLES = """Examples:

  ldm encode photo.jpg --model demo

  ldm encode photos/ -o latents/ --dim 512 --resize crop

  ldm encode photo.jpg --sample --seed 7 --report --visualize

  ldm encode huge.tif --tile
"""

DECODE_EXAMPLES = """Examples:

  ldm decode photo.latent.safetensors

  ldm decode latents/*.latent.safetensors -o decoded/ --model demo

  ldm decode old.pt --allow-pickle --model demo
"""

TileOpt = Annotated[
    Optional[bool],
    typer.Option("--tile/--no-tile", help="Tiled VAE for large images [default: automatic above 2x2 VAE tiles, 1024x1024 for SD].",
                 show_default=False),
]


def register(app: typer.Typer) -> None:
    app.command("encode", help="Encode images to VAE latents (.latent.safetensors).", epilog=ENCODE_EXAMPLES)(encode)
    app.command("decode", help="Decode latents back to a PNG.", epilog=DECODE_EXAMPLES)(decode)


def encode(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders of images.", show_default=False)],
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output folder, or a .latent.safetensors name for one image [default: .].")
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Store a seeded sample of the posterior instead of its mean.")
    ] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="With --sample: 0..2^64-1 [default: random, printed].")] = None,
    dim: Annotated[Optional[int], typer.Option("--dim", help="Resize to a square of this many pixels.")] = None,
    height: Annotated[Optional[int], typer.Option("--height", help="Resize to this height (multiple of 8).")] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Resize to this width (multiple of 8).")] = None,
    resize: Annotated[
        str, typer.Option("--resize", help="How to reach --dim/--height/--width: crop (fill), pad (fit, white) or stretch.")
    ] = "crop",
    tile: TileOpt = None,
    report: Annotated[bool, typer.Option("--report", help="Decode again and print reconstruction PSNR and SSIM.")] = False,
    visualize: Annotated[
        bool, typer.Option("--visualize", help="Also write <name>.channels.png: the latent channels side by side.")
    ] = False,
    json_output: JsonOpt = False,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    vae: VaeOpt = None,
) -> int:
    from ldm_cli.pipeline.codec.codec_settings import EncodeSettings, validate_encode
    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.pipeline.codec.encode_images import run_encode
    from ldm_cli.files.image_io import SizePolicy, check_multiple

    check_multiple("--dim", dim)  # before it becomes --height/--width, so the message names what was typed
    settings = EncodeSettings(
        inputs=tuple(images), out=out, sample=sample, seed=seed,
        size=SizePolicy(height if height is not None else dim, width if width is not None else dim, resize),
        tile=tile, report=report, visualize=visualize, json_output=json_output,
        model=ModelSettings(model=model, revision=revision, offline=offline, device=device, dtype=dtype, vae=vae),
    )
    check_device_and_dtype(device, dtype)
    files = validate_encode(settings)
    run_encode(settings, files)
    return 0


def decode(
    latents: Annotated[list[Path], typer.Argument(help="Latent files from `ldm encode` (.latent.safetensors).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder, or a .png name for one file [default: .].")] = None,
    tile: TileOpt = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Also read .pt/.npy latents (pickle can run code: trusted files only).")
    ] = False,
    json_output: JsonOpt = False,
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Model whose VAE decodes [default: the model recorded in the file].")
    ] = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    vae: VaeOpt = None,
) -> int:
    from ldm_cli.pipeline.codec.codec_settings import DecodeSettings, validate_decode
    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.pipeline.codec.decode_latents import run_decode

    settings = DecodeSettings(
        inputs=tuple(latents), out=out, tile=tile, json_output=json_output, model_given=model is not None,
        model=ModelSettings(model=model, revision=revision, offline=offline, allow_pickle=allow_pickle, device=device, dtype=dtype,
                            vae=vae),
    )
    check_device_and_dtype(device, dtype)
    files = validate_decode(settings)
    run_decode(settings, files)
    return 0
