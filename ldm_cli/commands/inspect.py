"""`ldm inspect`: what a model file, LoRA, embedding, latent file or image is, and how ldm can use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ldm_cli.options import JsonOpt

EXAMPLES = """Examples:

  ldm inspect v1-5-pruned-emaonly.safetensors

  ldm inspect loras/pixel-art.safetensors --json

  ldm inspect embeddings/EasyNegative.safetensors
"""


def register(app: typer.Typer) -> None:
    app.command("inspect", help="Say what a checkpoint, model folder, VAE, LoRA, embedding or latent file is, "
                "its hashes, and how ldm can use it.", epilog=EXAMPLES)(inspect)


def inspect(
    target: Annotated[Path, typer.Argument(help="A file or folder.", show_default=False)],
    json_output: JsonOpt = False,
) -> int:
    from ldm_cli.models.inspection import inspect_path, render

    report = inspect_path(target)
    print(json.dumps(report) if json_output else render(report))
    return 0
