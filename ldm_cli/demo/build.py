"""`make demo-model`: rebuild the bundled demo model from nothing, resumably.

    python -m ldm_cli.demo.build [--work build/demo] [--out ldm_cli/assets/demo]

Stages (each skipped when its output exists, each training stage resumes from its checkpoint):
    1. data     render the synthetic training set               work/data/ (PNGs + metadata.jsonl)
    2. vae      train the AutoencoderKL (ELBO)                   work/vae/
    3. decoder  fine-tune its decoder alone (latents unchanged)  work/vae-final/
    4. latents  encode the training set once                     work/latents.safetensors
    5. unet     train text encoder + UNet (noise prediction)     work/model/
    6. ship     copy the model and the final VAE into the package   ldm_cli/assets/demo/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ldm_cli.demo.recipe import RECIPE, DemoRecipe

WORK = Path("build/demo")
STAGES = ["data", "vae", "decoder", "latents", "unet", "ship"]
OUT = Path(__file__).resolve().parent.parent / "assets" / "demo"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def check_work_recipe(work: Path, recipe: DemoRecipe) -> None:
    """Stages skip what `work` already holds, so it must hold a build of this same recipe.

    The first run records the recipe in work/recipe.json; a later run with a changed recipe stops
    with the fix instead of shipping old weights under the new recipe's name.
    """
    path = Path(work) / "recipe.json"
    wanted = json.loads(json.dumps(recipe.to_dict()))
    if path.exists():
        held = json.loads(path.read_text())
        if held != wanted:
            changed = sorted(k for k in wanted if held.get(k) != wanted[k])
            raise SystemExit(
                f"{work} holds a build of a different recipe (changed: {', '.join(changed)}); "
                f"delete {work} or pass --work NEW_FOLDER to rebuild with ldm_cli/demo/recipe.py"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2) + "\n")


def stage_data(work: Path, recipe: DemoRecipe) -> Path:
    from ldm_cli.demo.shapes import write_dataset

    folder = work / "data"
    if not (folder / "metadata.jsonl").exists():
        log(f"rendering {recipe.count} training images into {folder}")
        write_dataset(folder, recipe.count, recipe.data_seed)
    return folder


def stage_vae(work: Path, recipe: DemoRecipe, data: Path) -> Path:
    from ldm_cli.demo.shapes import read_dataset
    from ldm_cli.demo.train_vae import latent_scale, round_trip_psnr, save_vae, train_vae

    folder = work / "vae"
    if (folder / "config.json").exists():
        return folder
    images, _ = read_dataset(data)
    vae = train_vae(images, work, recipe.vae, log=log)
    scale = latent_scale(vae, images[:2000])
    log(f"vae round-trip PSNR on 256 training images: {round_trip_psnr(vae, images[:256]):.2f} dB; scaling_factor {scale:.4f}")
    return save_vae(vae, folder, scale)


def stage_decoder(work: Path, recipe: DemoRecipe, data: Path, vae_folder: Path) -> Path:
    from diffusers import AutoencoderKL

    from ldm_cli.demo.shapes import read_dataset
    from ldm_cli.demo.train_vae import polish_decoder, round_trip_psnr

    folder = work / "vae-final"
    if (folder / "config.json").exists():
        return folder
    images, _ = read_dataset(data)
    vae = polish_decoder(AutoencoderKL.from_pretrained(vae_folder), images, work, recipe.vae, log=log)
    log(f"vae round-trip PSNR after decoder polish, 256 training images: {round_trip_psnr(vae, images[:256]):.2f} dB")
    vae.save_pretrained(folder)
    return folder


def stage_latents(work: Path, data: Path, vae_folder: Path) -> Path:
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from ldm_cli.demo.shapes import read_dataset
    from ldm_cli.demo.train_vae import encode_all

    path = work / "latents.safetensors"
    if path.exists():
        return path
    images, captions = read_dataset(data)
    vae = AutoencoderKL.from_pretrained(vae_folder).eval()
    log(f"encoding {len(images)} images to latents")
    latents = encode_all(vae, images) * vae.config.scaling_factor
    tmp = path.with_suffix(".tmp")
    save_file({"latents": latents.contiguous()}, str(tmp), metadata={"captions": json.dumps(captions)})
    tmp.replace(path)
    return path


def stage_unet(work: Path, recipe: DemoRecipe, latents: Path, vae_folder: Path) -> Path:
    from ldm_cli.demo.train_text_to_image import train_text_to_image

    folder = work / "model"
    if (folder / "model_index.json").exists():
        return folder
    return train_text_to_image(latents, vae_folder, work, folder, recipe, log=log)


def stage_ship(model: Path, vae: Path, out: Path, recipe: DemoRecipe) -> Path:
    from ldm_cli.demo.ship import ship

    return ship(model, vae, out, recipe)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=WORK, help="working folder (data, checkpoints)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the finished model goes")
    parser.add_argument("--until", choices=STAGES, default="ship",
                        help="stop after this stage")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the 2 cores are shared: one thread wastes nothing on spin-waits
    started = time.monotonic()
    wanted = STAGES[: STAGES.index(args.until) + 1]
    check_work_recipe(args.work, RECIPE)
    data = stage_data(args.work, RECIPE)
    if "vae" in wanted:
        vae = stage_vae(args.work, RECIPE, data)
    if "decoder" in wanted:
        vae = stage_decoder(args.work, RECIPE, data, vae)
    if "latents" in wanted:
        latents = stage_latents(args.work, data, vae)
    if "unet" in wanted:
        model = stage_unet(args.work, RECIPE, latents, vae)
    if "ship" in wanted:
        stage_ship(model, vae, args.out, RECIPE)
    log(f"done ({args.until}) in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
