"""The flags of `ldm generate` exactly as given, before --from and the defaults are merged in.

One field per parameter of `generate` (same name, no defaults: Typer's signature holds them, and a flag
left out of `GenerateFlags(...)` fails at once). `ldm grid` builds one per cell from generate's own parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GenerateFlags:
    # what to make, and where it goes
    prompt: str | None
    prompts_file: Path | None
    from_image: Path | None
    negative_prompt: str | None
    steps: int | None
    guidance: float | None
    seed: int | None
    dim: int | None
    height: int | None
    width: int | None
    scheduler: str | None
    num_images: int | None
    out: Path | None
    resume: bool
    json_output: bool
    dry_run: bool
    # what else to save
    save_intermediates: bool
    every: int
    intermediates: str
    attention_maps: bool
    # img2img
    init_image: Path | None
    init_latents: Path | None
    strength: float | None
    resize: str | None
    # inpainting and outpainting
    mask: Path | None
    mask_blur: int | None
    keep_unmasked: bool | None
    inpaint_area: str | None
    inpaint_padding: int | None
    invert_mask: bool | None
    masked_content: str | None
    outpaint: str | None
    outpaint_fill: str | None
    # the A1111 recipe
    prompt_syntax: str | None
    clip_skip: int | None
    schedule_type: str | None
    variation_seed: int | None
    variation_strength: float | None
    eta_noise_seed_delta: int | None
    tcd_gamma: float | None
    pad_conds: bool | None
    hires_scale: float | None
    hires_steps: int | None
    hires_strength: float | None
    hires_upscaler: str | None
    rng: str | None
    # the model, and where it runs
    model: str | None
    revision: str | None
    offline: bool
    allow_pickle: bool
    config: Path | None
    device: str
    dtype: str
    vae: str | None
    variant: str | None
    ema: bool
    # extra networks
    lora: list[str] | None
    lora_dir: list[Path] | None
    embedding: list[str] | None
    embeddings_dir: list[Path] | None
    # fast paths
    compile_unet: bool
    offload: bool
    channels_last: bool
    vae_tiling: bool
    backend: str
    cache_interval: int | None
    token_merging: float | None
