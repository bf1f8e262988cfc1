"""Option aliases shared by commands: one definition, one help string each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m",
        help="Model: 'demo', a diffusers folder, an SD1.x .safetensors file or a Hub id "
        "[default: $LDM_MODEL, else stable-diffusion-v1-5/stable-diffusion-v1-5]",
    ),
]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Hub branch, tag or commit of --model.")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Use only the local HF cache (like HF_HUB_OFFLINE=1).")]
AllowPickleOpt = Annotated[
    bool, typer.Option("--allow-pickle", help="Allow .ckpt/.bin/.pt weights (pickle can run code: trusted files only).")
]
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", help="Component configs for a single-file checkpoint [default: bundled SD1.5 configs]."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (fp16 on CUDA; generate on a CPU with native bf16: bf16 for SD-sized UNets; else fp32), fp32, fp16 or bf16.")]
BackendOpt = Annotated[
    str,
    typer.Option("--backend", help="What runs the UNet: torch, or openvino (CPU; optional package, exported once and "
                 "cached; --dtype auto/bf16/fp32 picks its precision)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line per result on stdout.")]
VariantOpt = Annotated[
    Optional[str],
    typer.Option("--variant", help="Weight variant of a folder/Hub model, e.g. fp16 (reads *.fp16.safetensors).",
                 show_default=False),
]
VaeOpt = Annotated[
    Optional[str],
    typer.Option("--vae", help="Use this VAE instead of the model's: a diffusers VAE folder, a .vae.safetensors file or a Hub id.",
                 show_default=False),
]
EmaOpt = Annotated[
    bool, typer.Option("--ema", help="Single-file checkpoint: use its EMA UNet weights (model_ema.*) instead of the normal ones.")
]
LoraDirOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--lora-dir", metavar="DIR",
                 help="Folder where <lora:NAME:W> prompt tags find NAME.safetensors; repeatable [default: $LDM_LORA_DIR]."),
]
EmbeddingsDirOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--embeddings-dir", metavar="DIR",
                 help="Folder of embeddings; those a prompt names by file stem are loaded; repeatable [default: $LDM_EMBEDDINGS_DIR]."),
]
