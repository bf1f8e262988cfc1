"""`ldm info` (what a PNG records) and `ldm schedulers` (what --scheduler accepts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ldm_cli.options import JsonOpt


def register(app: typer.Typer) -> None:
    app.command("info", help="Show how an image was made (its ldm record and A1111 parameters).",
                epilog="Example:\n\n  ldm info outputs/a-scarlet-macaw-42.png")(info)
    app.command("schedulers", help="List the samplers --scheduler accepts and their schedule types.",
                epilog="Example:\n\n  ldm schedulers")(schedulers)


def info(
    image: Annotated[Path, typer.Argument(help="An image made by ldm, A1111 (PNG, JPEG, WebP) or Fooocus.", show_default=False)],
    json_output: JsonOpt = False,
) -> int:
    from ldm_cli.errors import InputFileError, printable
    from ldm_cli.files.metadata import read_png_metadata

    if image.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".bin", ".pth") or image.is_dir():
        raise InputFileError(f"{image}: a model, LoRA or embedding, not an image; use `ldm inspect {image}`")
    chunks = read_png_metadata(image)
    if chunks["ldm"] is None and chunks["parameters"] is None:
        raise InputFileError(f"{image}: no generation metadata in it (not made by ldm or A1111)")
    if json_output:
        print(json.dumps(chunks["ldm"] if chunks["ldm"] is not None else chunks))
        return 0
    if chunks.get("fooocus") is not None:
        print("(a Fooocus record, shown as an A1111 infotext; --json prints it as Fooocus wrote it)")
    if chunks["parameters"]:
        print(printable(chunks["parameters"], keep_newlines=True))  # file text: no escape sequences reach the terminal
        print()
    if chunks["ldm"] is not None:
        print(json.dumps(chunks["ldm"], indent=2, sort_keys=True))
    return 0


def schedulers() -> int:
    from ldm_cli.pipeline.loop.schedule_types import SCHEDULE_TYPES, types_for
    from ldm_cli.pipeline.loop.schedulers import A1111_AUTOMATIC, SCHEDULERS

    width = max(len(name) for name in SCHEDULERS)
    for name, spec in SCHEDULERS.items():
        print(f"{name:<{width}}  {spec.a1111_name:<16} {spec.description}")
        kinds = types_for(name)
        if kinds:
            labels = ", ".join(SCHEDULE_TYPES[k].label for k in kinds)
            print(f"{'':<{width}}  {'':<16} --schedule-type: {labels} (Automatic = {SCHEDULE_TYPES[A1111_AUTOMATIC[name]].label})")
    print('\nA1111 names work too: --scheduler "DPM++ 2M" --schedule-type karras, or --scheduler "DPM++ 2M Karras".')
    return 0
