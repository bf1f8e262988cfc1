"""`ldm generate`: text -> image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldm_cli.options import (
    AllowPickleOpt, ConfigOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OfflineOpt, RevisionOpt,
)

EXAMPLES = """Examples:

  ldm generate "a scarlet macaw" --steps 50 --g 7.5 --seed 42

  ldm generate "a red circle on a blue background" --model demo -n 4 --out shapes/

  ldm generate --prompts-file prompts/examples.txt --scheduler dpm++2m --steps 25

  ldm generate "a lighthouse at dusk" --save-intermediates --every 5

  ldm generate --from outputs/a-scarlet-macaw-42.png --steps 30

  ldm generate "a scarlet macaw" --dim 768 --dry-run

  ldm generate "a watercolor painting" --init-image photo.jpg --strength 0.6
"""


def register(app: typer.Typer) -> None:
    app.command("generate", help="Generate images from a text prompt.", epilog=EXAMPLES)(generate)


def generate(
    prompt: Annotated[Optional[str], typer.Argument(help="What the image should show.", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", "-s", help="Denoising steps, 1..1000 [default: 50].")] = None,
    guidance: Annotated[
        Optional[float],
        typer.Option("--guidance", "--g", "-g", help="Classifier-free guidance scale; <= 1 disables it [default: 7.5]."),
    ] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="0..2^64-1; image i uses seed+i [default: random, printed].")] = None,
    dim: Annotated[Optional[int], typer.Option("--dim", help="Square size in pixels [default: the model's native size].")] = None,
    height: Annotated[Optional[int], typer.Option("--height", help="Height in pixels, multiple of 8, 64..2048.")] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Width in pixels, multiple of 8, 64..2048.")] = None,
    negative_prompt: Annotated[
        Optional[str], typer.Option("--negative-prompt", "--neg", help="What the image should not show.")
    ] = None,
    scheduler: Annotated[
        Optional[str], typer.Option("--scheduler", help="Sampler, see `ldm schedulers` [default: the model's own].")
    ] = None,
    num_images: Annotated[Optional[int], typer.Option("--num-images", "-n", help="Images per prompt [default: 1].")] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output .png file or folder; never overwrites [default: outputs/].")
    ] = None,
    prompts_file: Annotated[
        Optional[Path], typer.Option("--prompts-file", help="Text file with one prompt per line ('#' lines skipped).")
    ] = None,
    from_image: Annotated[
        Optional[Path], typer.Option("--from", help="Re-run the settings recorded in a PNG; other flags override them.")
    ] = None,
    save_intermediates: Annotated[
        bool, typer.Option("--save-intermediates", help="Also save the image at each step, and a contact sheet.")
    ] = False,
    every: Annotated[int, typer.Option("--every", help="With --save-intermediates: keep every Nth step.")] = 1,
    intermediates: Annotated[
        str, typer.Option("--intermediates", help="preview (fast linear latent->RGB map) or exact (VAE decode per step).")
    ] = "preview",
    init_image: Annotated[
        Optional[Path], typer.Option("--init-image", help="img2img: start from this picture (SDEdit) instead of noise.")
    ] = None,
    init_latents: Annotated[
        Optional[Path], typer.Option("--init-latents", help="img2img: start from a .latent.safetensors from `ldm encode`.")
    ] = None,
    strength: Annotated[
        Optional[float], typer.Option("--strength", help="img2img: how much to change, 0..1; 1 keeps little [default: 0.75].")
    ] = None,
    resize: Annotated[
        Optional[str], typer.Option("--resize", help="img2img: fit --init-image to --dim/--height/--width by crop, pad or stretch.")
    ] = None,
    json_output: JsonOpt = False,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    allow_pickle: AllowPickleOpt = False,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    lora: Annotated[
        Optional[list[str]], typer.Option("--lora", help="LoRA .safetensors to apply, FILE or FILE:SCALE; repeatable.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved settings, latent shape and a memory estimate; load nothing.")
    ] = False,
    compile_unet: Annotated[
        bool, typer.Option("--compile", help="torch.compile the UNet: slow first image, faster repeats (many images).")
    ] = False,
    offload: Annotated[
        bool, typer.Option("--offload", help="CUDA with little memory: keep models on the CPU, move each to the GPU as it runs.")
    ] = False,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Channels-last (NHWC) memory format for the UNet; see README Performance for its effect.")
    ] = False,
    vae_tiling: Annotated[
        bool, typer.Option("--vae-tiling", help="Decode the VAE in overlapping tiles: bounded memory for large images.")
    ] = False,
    attention_maps: Annotated[
        bool, typer.Option("--attention-maps", help="Also save each prompt word's cross-attention map: <name>-attention.png and .safetensors.")
    ] = False,
) -> int:
    from ldm_cli.commands.generate_settings import build_settings

    settings = build_settings(locals())
    if settings.dry_run:
        from ldm_cli.pipeline.dry_run import print_plan

        print_plan(settings)
        return 0
    from ldm_cli.pipeline import txt2img

    hook = None
    if settings.attention_maps:
        from ldm_cli.explain.attention_maps import watch_attention as hook
    txt2img.run(settings, image_hook=hook)
    return 0
