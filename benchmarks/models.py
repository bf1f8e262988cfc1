"""The three model sizes the benchmark runs: tiny (tests), the bundled demo (when built), SD1.5.

SD1.5 is the full architecture from the shipped configs with random weights, saved once as
safetensors under benchmarks/.cache/ (git-ignored), so a fresh `ldm generate` really loads 4 GB.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ldm_cli.models.loading import BUNDLED_MODELS, SD15_CONFIG_DIR

CACHE = Path(__file__).parent / ".cache"


@dataclass(frozen=True)
class ModelCase:
    name: str
    folder: Path
    size: int  # pixels, square
    steps: int  # steps of each timed ldm/diffusers loop
    variant_steps: int  # steps of each fast-path variant's loop (1 at SD1.5: a bf16 step takes minutes)
    repeats: int  # interleaved repeats of the ldm/diffusers comparison (min is kept)
    e2e_steps: int  # steps of the fresh-process `ldm generate` run
    compile: bool  # measure --compile (inductor) here: compile time is minutes at SD1.5 on 2 cores
    psnr_size: int  # size of the bf16-vs-fp32 picture comparison
    threads: int | None = None  # None: torch's default (all cores). The tiny model runs on 1 thread: its
    # convolutions take microseconds, and on a shared 2-core machine an OpenMP team of 2 waits ~100x
    # longer for a busy core than it computes, which would measure the neighbours, not the code.
    # The demo model is as narrow (32-64 channels), so it runs on 1 thread too.


def cases(selected: set[str]) -> list[ModelCase]:
    found = []
    if "tiny" in selected:
        found.append(ModelCase("tiny", tiny_folder(), size=64, steps=10, variant_steps=10, repeats=3, e2e_steps=10,
                               compile=True, psnr_size=64, threads=1))
    demo = BUNDLED_MODELS["demo"]
    if "demo" in selected and (demo / "model_index.json").exists():
        found.append(ModelCase("demo", demo, size=_native_size(demo), steps=10, variant_steps=10, repeats=2,
                               e2e_steps=10, compile=True, psnr_size=_native_size(demo), threads=1))
    if "sd15" in selected:
        found.append(ModelCase("sd15", sd15_folder(), size=512, steps=1, variant_steps=1, repeats=2, e2e_steps=2,
                               compile=False, psnr_size=256))
    return found


def tiny_folder() -> Path:
    from ldm_cli.tiny import build_tiny_model

    folder = CACHE / "tiny"
    if not (folder / "unet" / "diffusion_pytorch_model.safetensors").exists():
        shutil.rmtree(folder, ignore_errors=True)
        build_tiny_model(folder, seed=0)
    return folder


def sd15_folder() -> Path:
    """Build (once) SD1.5's text encoder, VAE and UNet from the shipped configs with random weights."""
    folder = CACHE / "sd15-random"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    print("building SD1.5-size random weights once (benchmarks/.cache/sd15-random, 4.3 GB)", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(SD15_CONFIG_DIR / "text_encoder"))
    text.save_pretrained(folder / "text_encoder")
    del text
    AutoencoderKL.from_config(AutoencoderKL.load_config(SD15_CONFIG_DIR / "vae")).save_pretrained(folder / "vae")
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SD15_CONFIG_DIR / "unet"))
    unet.save_pretrained(folder / "unet")
    del unet
    for part in ("tokenizer", "scheduler"):
        shutil.copytree(SD15_CONFIG_DIR / part, folder / part)
    shutil.copy(SD15_CONFIG_DIR / "model_index.json", folder / "model_index.json")
    marker.write_text("ok\n")
    return folder


def _native_size(folder: Path) -> int:
    import json

    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    return unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)
