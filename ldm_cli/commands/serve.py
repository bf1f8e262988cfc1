"""`ldm serve`: keep one model loaded and answer A1111's /sdapi/v1 API, plus a page at `/`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldm_cli.options import (
    AllowPickleOpt, BackendOpt, ConfigOpt, DeviceOpt, DtypeOpt, EmbeddingsDirOpt, LoraDirOpt, ModelOpt, OfflineOpt, RevisionOpt, VaeOpt,
)

EXAMPLES = """Examples:

  ldm serve --model demo                       # http://127.0.0.1:7860/ (page) and /sdapi/v1 (API)

  ldm serve --model ~/models/sd15.safetensors --port 7861 --max-queue 4

  ldm serve --host 0.0.0.0 --api-auth alice:s3cret   # reachable from the network: auth required
"""


def register(app: typer.Typer) -> None:
    app.command("serve", help="Serve an A1111-compatible HTTP API and a local web page.", epilog=EXAMPLES)(serve)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; a non-loopback one needs --api-auth or --insecure.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port, 0..65535 (0: any free port, printed).")] = 7860,
    api_auth: Annotated[
        Optional[str], typer.Option("--api-auth", help="HTTP basic auth for every route: USER:PASSWORD[,USER2:PASSWORD2].")
    ] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without --api-auth.")] = False,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Jobs that may wait behind the running one, 1..1000; more get 503.")] = 16,
    max_body_mb: Annotated[int, typer.Option("--max-body-mb", help="Largest request body in MB, 1..2048 (base64 images).")] = 50,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the PNGs of requests with save_images; never overwrites.")
    ] = Path("outputs"),
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    allow_pickle: AllowPickleOpt = False,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    lora: Annotated[
        Optional[list[str]], typer.Option("--lora", help="LoRA .safetensors merged into the model at start, FILE or FILE:SCALE; repeatable.")
    ] = None,
    lora_dir: LoraDirOpt = None,
    embeddings_dir: EmbeddingsDirOpt = None,
    vae: VaeOpt = None,
    compile_unet: Annotated[bool, typer.Option("--compile", help="torch.compile the UNet: a slow first request, faster later ones.")] = False,
    offload: Annotated[bool, typer.Option("--offload", help="CUDA with little memory: models wait on the CPU, each moves to the GPU to run.")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Channels-last (NHWC) memory format for the UNet.")] = False,
    vae_tiling: Annotated[bool, typer.Option("--vae-tiling", help="Decode the VAE in overlapping tiles: bounded memory for large images.")] = False,
    backend: BackendOpt = "torch",
) -> int:
    from ldm_cli.errors import UsageError
    from ldm_cli.models.backends import check_backend
    from ldm_cli.models.devices import check_device_and_dtype
    from ldm_cli.models import network_files
    from ldm_cli.models.lora import parse_lora_arg
    from ldm_cli.models.performance import PerformanceSettings
    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.serve.guard import parse_credentials
    from ldm_cli.serve.server import ServeSettings, check_exposure, run

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 0 and 65535 (7860 is A1111's)")
    if not 1 <= max_queue <= 1000:
        raise UsageError(f"--max-queue {max_queue}: must be between 1 and 1000")
    if not 1 <= max_body_mb <= 2048:
        raise UsageError(f"--max-body-mb {max_body_mb}: must be between 1 and 2048")
    credentials = {}
    if api_auth is not None:
        try:
            credentials = parse_credentials(api_auth)
        except ValueError as exc:
            raise UsageError(f"--api-auth: {exc}; write USER:PASSWORD (several: USER1:PW1,USER2:PW2)") from None
    check_device_and_dtype(device, dtype)
    check_backend(backend, device=device, dtype=dtype, compile=compile_unet, channels_last=channels_last)
    if config is not None and not config.is_dir():
        raise UsageError(f"--config {config}: not a folder of component configs")
    settings = ServeSettings(
        model=ModelSettings(model=model, revision=revision, offline=offline, allow_pickle=allow_pickle, config=config,
                            device=device, dtype=dtype, vae=vae),
        loras=tuple(str(parse_lora_arg(v)) for v in lora or ()),
        lora_dirs=network_files.folders("--lora-dir", tuple(lora_dir or ()), network_files.LORA_DIR_ENV),
        embeddings_dirs=network_files.folders("--embeddings-dir", tuple(embeddings_dir or ()), network_files.EMBEDDINGS_DIR_ENV),
        performance=PerformanceSettings(channels_last=channels_last, compile=compile_unet, offload=offload, vae_tiling=vae_tiling,
                                        backend=backend),
        host=host, port=port, credentials=tuple(credentials.items()), insecure=insecure,
        max_queue=max_queue, max_body_mb=max_body_mb, out=out,
    )
    if out.suffix.lower() == ".png" or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out}: give a folder (each saved image gets its own name)")
    check_exposure(settings)
    return run(settings)
