"""`ldm grid`: A1111's X/Y/Z plot. Every cell is the `ldm generate` run with that cell's settings,
written as a normal ldm PNG; the labelled sheet goes beside them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLES = """Examples:

  ldm grid "a red fox" --model demo --x steps=10,20,30 --y g=4,7.5 --seed 1

  ldm grid "a red fox" --x "prompt=red,blue,green" --y "scheduler=Euler a,DPM++ 2M" --z clip-skip=1,2

  ldm grid "a castle" --x hires-scale=1,1.5,2 --hires-scale 1 --steps 20 --out grids/castle

Any `ldm generate` flag works too; it sets what the axes do not change.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "grid", help="A1111's X/Y/Z plot: one labelled sheet, plus each cell as a normal ldm PNG.", epilog=EXAMPLES,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(grid)


def grid(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The prompt every cell starts from.", show_default=False)],
    x: Annotated[Optional[str], typer.Option("--x", help="KEY=V1,V2,... across; keys: steps, g, seed, scheduler, "
                 "schedule-type, tcd-gamma, clip-skip, strength, hires-scale, hires-steps, lora, variation-seed, "
                 "variation-strength, prompt (S/R).")] = None,
    y: Annotated[Optional[str], typer.Option("--y", help="KEY=V1,V2,... down.")] = None,
    z: Annotated[Optional[str], typer.Option("--z", help="KEY=V1,V2,... one sheet block per value.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for the sheet and the cells [default: outputs/grid-PROMPT].")] = None,
) -> int:
    from ldm_cli.errors import UsageError
    from ldm_cli.pipeline.grid import parse_axis

    axes = [parse_axis(flag, text) if text else None for flag, text in (("--x", x), ("--y", y), ("--z", z))]
    if not any(axes):
        raise UsageError("ldm grid needs at least one axis, e.g. --x steps=10,20,30")
    base = generate_arguments(prompt, list(ctx.args))
    run_grid(prompt, axes, base, out)
    return 0


def generate_arguments(prompt: str, extra: list[str]) -> dict:
    """The arguments `ldm generate PROMPT EXTRA...` would get, parsed by generate's own options."""
    from ldm_cli.commands import generate as generate_command
    from ldm_cli.errors import UsageError

    if "--out" in extra or "-o" in extra or "--from" in extra or "--prompts-file" in extra:
        raise UsageError("ldm grid: --from and --prompts-file are not grid flags; --out names the grid's folder")
    app = typer.Typer()
    app.command()(generate_command.generate)
    command = typer.main.get_command(app)
    context = command.make_context("ldm grid", [prompt, *extra])
    return dict(context.params)


def run_grid(prompt: str, axes, base: dict, out: Path | None) -> Path:
    """Validate every cell, then generate them (one model load per set of model settings) and draw the sheet."""
    import numpy as np
    from PIL import Image

    from ldm_cli.commands.generate_flags import GenerateFlags
    from ldm_cli.commands.generate_settings import build_settings
    from ldm_cli.files.images import free_path, save_png, slugify
    from ldm_cli.pipeline import grid as plot
    from ldm_cli.pipeline import txt2img

    folder = free_path(out or Path("outputs") / f"grid-{slugify(prompt, 32)}")
    if base.get("seed") is None:  # one seed for the whole grid, or the cells would not compare
        import secrets

        base["seed"] = secrets.randbelow(2**32)
        print(f"seed {base['seed']} (random)", file=sys.stderr, flush=True)
    jobs = []
    for index in plot.cells(axes):
        args = dict(base)
        # strength last: it is the hires pass's when a hires-scale axis (or flag) is there
        for axis, i in sorted(zip(axes, index), key=lambda pair: pair[0] is not None and pair[0].key.name == "strength"):
            if axis is not None:
                args = plot.apply(args, axis, axis.values[i])
        args["out"] = folder / ("cell-" + "-".join(str(i + 1) for i in index) + ".png")
        settings = build_settings(GenerateFlags(**args))  # every cell checked before any model loads
        jobs.append((index, settings))
    images = {}
    loaded_for, loaded = None, None
    for index, settings in sorted(jobs, key=lambda job: _model_key(job[1])):
        if _model_key(settings) != loaded_for:
            loaded_for, loaded = _model_key(settings), None
            loaded = txt2img.load_model(settings)
        [summary] = txt2img.run(settings, loaded)
        images[index] = np.asarray(Image.open(summary["path"]).convert("RGB"))
    sheet = plot.draw_sheet(images, axes)
    record = {"tool": "ldm", "command": "grid", "prompt_base": prompt,
              "axes": {flag: {"key": a.key.name, "values": list(a.values)} for flag, a in zip("xyz", axes) if a}}
    path = save_png(sheet, folder / "sheet.png", {"ldm": json.dumps(record)})
    print(f"saved {path}  ({len(jobs)} cells in {folder})", flush=True)
    return path


def _model_key(settings) -> tuple:
    """Cells that share this share one model load (LoRA merges change the weights)."""
    return (repr(settings.model), settings.loras, repr(settings.performance))
