"""`ldm generate`: text -> image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldm_cli.options import (
    AllowPickleOpt, ConfigOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OfflineOpt, RevisionOpt,
)
from ldm_cli.options import BackendOpt, EmaOpt, EmbeddingsDirOpt, LoraDirOpt, VaeOpt, VariantOpt

EXAMPLES = """Examples:

  ldm generate "a scarlet macaw" --steps 50 --g 7.5 --seed 42

  ldm generate "a red circle on a blue background" --model demo -n 4 --out shapes/

  ldm generate --prompts-file prompts/examples.txt --scheduler dpm++2m --steps 25

  ldm generate "a lighthouse at dusk" --save-intermediates --every 5

  ldm generate --from outputs/a-scarlet-macaw-42.png --steps 30

  ldm generate "a scarlet macaw" --dim 768 --dry-run

  ldm generate "a watercolor painting" --init-image photo.jpg --strength 0.6

  ldm generate "a lighthouse" --model model.safetensors --vae vae-ft-mse-840000-ema-pruned.safetensors

  ldm generate "a lighthouse" --model stable-diffusion-v1-5/stable-diffusion-v1-5 --variant fp16

  ldm generate "a red circle" --init-image photo.png --mask mask.png

  ldm generate "a wide beach" --init-image photo.png --outpaint 128,0,128,0

  ldm generate "a (red:1.3) fox BREAK [blurry] snow" --clip-skip 2 --scheduler "DPM++ 2M Karras"

  accelerate launch --multi_gpu --num_processes 2 -m ldm_cli generate --prompts-file F --seed 1 -o out/ --resume

  ldm generate "a castle" --hires-scale 2 --hires-strength 0.5 --variation-seed 7 --variation-strength 0.3

  ldm generate "a castle, <lora:pixel-art:0.8>" --lora-dir loras/ --embeddings-dir embeddings/

  ldm generate "a lighthouse" --lora tcd-sd15.safetensors --scheduler tcd --steps 4 --tcd-gamma 0.3

  ldm generate "a lighthouse at dusk" --backend openvino      # pip install 'ldm-cli[openvino]' first
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
    backend: BackendOpt = "torch",
    vae: VaeOpt = None,
    variant: VariantOpt = None,
    ema: EmaOpt = False,
    mask: Annotated[
        Optional[Path], typer.Option("--mask", help="Inpaint: repaint where this image is white (with --init-image).")
    ] = None,
    mask_blur: Annotated[
        Optional[int], typer.Option("--mask-blur", help="Inpaint: feather the mask by N pixels when keeping the rest [default: 4].")
    ] = None,
    keep_unmasked: Annotated[
        Optional[bool],
        typer.Option("--keep-unmasked/--no-keep-unmasked", help="Inpaint: paste the result over the init through the blurred mask [default: keep]."),
    ] = None,
    inpaint_area: Annotated[
        Optional[str], typer.Option("--inpaint-area", help="Inpaint: whole (the picture) or masked (a crop around the mask, at the model's size).")
    ] = None,
    inpaint_padding: Annotated[
        Optional[int], typer.Option("--inpaint-padding", help="Inpaint, --inpaint-area masked: pixels around the mask [default: 32].")
    ] = None,
    invert_mask: Annotated[
        Optional[bool], typer.Option("--invert-mask", help="Inpaint: repaint where the mask is black instead.")
    ] = None,
    masked_content: Annotated[
        Optional[str], typer.Option("--masked-content", help="Inpaint: what the masked area starts from: original or fill [default: original].")
    ] = None,
    outpaint: Annotated[
        Optional[str], typer.Option("--outpaint", help="Grow the canvas by LEFT,TOP,RIGHT,BOTTOM pixels (multiples of 8) and paint the border.")
    ] = None,
    outpaint_fill: Annotated[
        Optional[str], typer.Option("--outpaint-fill", help="Outpaint: start the border from mean (colour + noise) or edge (stretched) [default: mean].")
    ] = None,
    prompt_syntax: Annotated[
        Optional[str], typer.Option("--prompt-syntax", help="a1111: (word:1.2), [word], BREAK, long prompts; plain: literal text [default: a1111].")
    ] = None,
    clip_skip: Annotated[
        Optional[int], typer.Option("--clip-skip", help="Use CLIP's Nth layer from the end, A1111 numbering (1 = last) [default: 1].")
    ] = None,
    schedule_type: Annotated[
        Optional[str], typer.Option("--schedule-type", help="A1111's Schedule type: automatic, uniform, karras, exponential, sgm-uniform, beta.")
    ] = None,
    variation_seed: Annotated[
        Optional[int], typer.Option("--variation-seed", help="A second seed to blend toward (A1111's variation seed).")
    ] = None,
    variation_strength: Annotated[
        Optional[float], typer.Option("--variation-strength", help="0 = the seed's picture, 1 = the variation seed's [default: 0].")
    ] = None,
    eta_noise_seed_delta: Annotated[
        Optional[int], typer.Option("--eta-noise-seed-delta", "--ensd", help="A1111's ENSD: offsets the seed of ancestral samplers' step noise.")
    ] = None,
    tcd_gamma: Annotated[
        Optional[float], typer.Option("--tcd-gamma", help="--scheduler tcd: stochasticity, 0 (deterministic) .. 1 [default: 0.3].")
    ] = None,
    pad_conds: Annotated[
        Optional[bool], typer.Option("--pad-conds/--no-pad-conds", help="Pad prompt/negative to one length (A1111's 'Pad conds').")
    ] = None,
    hires_scale: Annotated[
        Optional[float], typer.Option("--hires-scale", help="Hires fix: upscale by F after a first pass, then an img2img pass.")
    ] = None,
    hires_steps: Annotated[
        Optional[int], typer.Option("--hires-steps", help="Hires fix: steps of the second pass; 0 = --steps [default: 0].")
    ] = None,
    hires_strength: Annotated[
        Optional[float], typer.Option("--hires-strength", help="Hires fix: denoising strength of the second pass [default: 0.7].")
    ] = None,
    hires_upscaler: Annotated[
        Optional[str], typer.Option("--hires-upscaler", help="Hires fix: latent (bilinear latents) or lanczos (pixels) [default: latent].")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish a run in --out: skip the images its manifest.jsonl already lists.")
    ] = False,
    cache_interval: Annotated[
        Optional[int], typer.Option("--cache-interval", help="DeepCache: a full UNet pass every Nth step, the others reuse its deep features; 1 = off [default: 1].")
    ] = None,
    token_merging: Annotated[
        Optional[float], typer.Option("--token-merging", metavar="R", help="ToMe: merge R (0-0.9) of the full-resolution tokens before self-attention; 1.2-1.7x per step at 512-768 px, changes the picture a little; 0 = off [default: 0].")
    ] = None,
    rng: Annotated[
        Optional[str], typer.Option("--rng", help="Where noise is drawn: cpu (A1111's 'RNG: CPU'); the only choice [default: cpu].")
    ] = None,
    lora_dir: LoraDirOpt = None,
    embedding: Annotated[
        Optional[list[str]], typer.Option("--embedding", metavar="FILE[:TOKEN]", help="Textual-inversion embedding FILE or FILE:TOKEN (token default: the file's stem); repeatable.")
    ] = None,
    embeddings_dir: EmbeddingsDirOpt = None,
    attention_maps: Annotated[
        bool, typer.Option("--attention-maps", help="Also save each prompt word's cross-attention map: <name>-attention.png and .safetensors.")
    ] = False,
) -> int:
    from ldm_cli.commands.generate_flags import GenerateFlags
    from ldm_cli.commands.generate_settings import build_settings

    flags = GenerateFlags(
        prompt=prompt, prompts_file=prompts_file, from_image=from_image, negative_prompt=negative_prompt,
        steps=steps, guidance=guidance, seed=seed, dim=dim, height=height, width=width, scheduler=scheduler,
        num_images=num_images, out=out, resume=resume, json_output=json_output, dry_run=dry_run,
        save_intermediates=save_intermediates, every=every, intermediates=intermediates, attention_maps=attention_maps,
        init_image=init_image, init_latents=init_latents, strength=strength, resize=resize,
        mask=mask, mask_blur=mask_blur, keep_unmasked=keep_unmasked, inpaint_area=inpaint_area,
        inpaint_padding=inpaint_padding, invert_mask=invert_mask, masked_content=masked_content,
        outpaint=outpaint, outpaint_fill=outpaint_fill,
        prompt_syntax=prompt_syntax, clip_skip=clip_skip, schedule_type=schedule_type, variation_seed=variation_seed,
        variation_strength=variation_strength, eta_noise_seed_delta=eta_noise_seed_delta, tcd_gamma=tcd_gamma,
        pad_conds=pad_conds,
        hires_scale=hires_scale, hires_steps=hires_steps, hires_strength=hires_strength, hires_upscaler=hires_upscaler,
        rng=rng,
        model=model, revision=revision, offline=offline, allow_pickle=allow_pickle, config=config, device=device,
        dtype=dtype, vae=vae, variant=variant, ema=ema,
        lora=lora, lora_dir=lora_dir, embedding=embedding, embeddings_dir=embeddings_dir,
        compile_unet=compile_unet, offload=offload, channels_last=channels_last, vae_tiling=vae_tiling, backend=backend,
        cache_interval=cache_interval,
        token_merging=token_merging,
    )
    settings = build_settings(flags)
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
