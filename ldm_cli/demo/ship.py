"""Copy a trained demo model into the package, with its recipe, and check the size budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ldm_cli.demo.recipe import DemoRecipe

BUDGET_BYTES = 30 * 1024 * 1024


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def ship(model: Path, vae: Path, out: Path, recipe: DemoRecipe) -> Path:
    """Copy `model` to `out` with `vae` (the decoder-polished VAE; same encoder, same latents) as its vae/."""
    size = folder_bytes(model)
    if size > BUDGET_BYTES:
        raise SystemExit(f"{model} is {size / 2**20:.1f} MiB, over the {BUDGET_BYTES / 2**20:.0f} MiB budget; shrink the recipe")
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model, tmp)
    shutil.rmtree(tmp / "vae")
    shutil.copytree(vae, tmp / "vae")
    (tmp / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
