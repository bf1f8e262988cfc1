"""Train the demo model's text encoder and UNet from scratch on cached latents, resumably.

DDPM's Algorithm 1 through ldm_cli.training.objective.diffusion_loss; the text encoder learns with
the UNet (gradients flow through the cross-attention). Caption dropout: a fraction of captions
become "" so the same network also learns the unconditional prediction that classifier-free
guidance needs (Ho & Salimans 2022). Every step's randomness comes from a generator seeded by
(seed, step), so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from ldm_cli.demo.checkpoints import load_checkpoint, save_checkpoint
from ldm_cli.demo.recipe import DemoRecipe, TextRecipe, UnetRecipe
from ldm_cli.demo.train_vae import learning_rate
from ldm_cli.models.loading import SD15_CONFIG_DIR
from ldm_cli.models.text_encoder_names import save_text_encoder
from ldm_cli.training.ema import EMA
from ldm_cli.training.objective import diffusion_loss

CHECKPOINT = "unet-checkpoint.pt"


def build_text_encoder(recipe: TextRecipe):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = json.loads((SD15_CONFIG_DIR / "text_encoder" / "config.json").read_text())
    config.update(
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        projection_dim=recipe.hidden_size,
    )
    return CLIPTextModel(CLIPTextConfig(**config))


def build_unet(recipe: UnetRecipe, cross_attention_dim: int, sample_size: int = 16):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=recipe.layers_per_block,
        block_out_channels=recipe.block_out_channels,
        down_block_types=recipe.down_block_types,
        up_block_types=recipe.up_block_types,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=recipe.attention_head_dim,
        norm_num_groups=recipe.norm_num_groups,
    )


def rescaled_betas(betas: torch.Tensor, terminal_signal: float) -> torch.Tensor:
    """The same schedule shifted and scaled so that sqrt(abar_T) = terminal_signal (Lin et al. 2023).

    sqrt(abar_t) is moved linearly: its first value stays, its last becomes terminal_signal.
    """
    root = torch.cumprod(1 - betas.double(), 0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first - terminal_signal) / (first - last) + terminal_signal
    alphas_cumprod = root**2
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1 - alphas


def build_scheduler(recipe: UnetRecipe):
    """The shipped sampler config: SD1's betas, rescaled per the recipe, with its prediction type.

    DDIM rather than SD1's PNDM: with near-zero terminal SNR, PNDM draws washed-out pictures at 20
    and at 50 steps (benchmarks/demo_samplers.py; likely its multistep extrapolation across the first
    step down from sigma = 250), where DDIM, Euler and DPM++ 2M are fine. set_alpha_to_one: the last
    step lands on x_0.
    """
    from diffusers import DDIMScheduler

    sd1 = DDIMScheduler.from_pretrained(SD15_CONFIG_DIR / "scheduler")
    if recipe.terminal_signal is None:
        return DDIMScheduler.from_config(sd1.config, prediction_type=recipe.prediction_type)
    betas = rescaled_betas(sd1.betas, recipe.terminal_signal)
    return DDIMScheduler.from_config(
        sd1.config, trained_betas=[round(b, 10) for b in betas.tolist()], prediction_type=recipe.prediction_type,
        timestep_spacing="trailing", set_alpha_to_one=True,  # (steps_offset stays 1: unused when trailing)
    )


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    """The same tokenization as generation (ldm_cli.pipeline.prompts.text): padded to 77 positions."""
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


class Trainable(torch.nn.Module):
    """Text encoder + UNet as one module, so one optimizer and one checkpoint hold both."""

    def __init__(self, text_encoder, unet):
        super().__init__()
        self.text_encoder = text_encoder
        self.unet = unet


def train_text_to_image(
    latents_file: Path,
    vae_folder: Path,
    work_dir: Path,
    out_folder: Path,
    recipe: DemoRecipe,
    checkpoint_seconds: float = 180,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
) -> Path | None:
    """Train text encoder + UNet on cached (already scaled) latents; write a diffusers folder.

    stop_after: checkpoint and return None at this step (call again to resume).
    """
    from diffusers import DDPMScheduler
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    r = recipe.unet
    latents = load_file(str(latents_file))["latents"]  # [N, 4, 16, 16], times scaling_factor
    with safe_open(str(latents_file), framework="pt") as f:
        captions = json.loads(f.metadata()["captions"])
    tokenizer = CLIPTokenizer.from_pretrained(SD15_CONFIG_DIR / "tokenizer")
    ids = tokenize(tokenizer, captions)  # [N, 77]
    empty = tokenize(tokenizer, [""])[0]
    torch.manual_seed(r.seed)
    model = Trainable(build_text_encoder(recipe.text), build_unet(r, recipe.text.hidden_size, latents.shape[-1]))
    scheduler = build_scheduler(r)
    noiser = DDPMScheduler.from_config(scheduler.config)  # add_noise / get_velocity for the objective
    optimizer = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.01, fused=True)  # fused: 10x faster on CPU
    ema = EMA(dict(model.named_parameters()), r.ema_decay) if r.ema_decay else None
    step = load_checkpoint(
        Path(work_dir) / CHECKPOINT, model, optimizer, log, restore_extra=(lambda state: ema.load_state_dict(state["ema"])) if ema else None
    )
    model.train()
    last_save, started, running = time.monotonic(), time.monotonic(), None
    last = r.steps if stop_after is None else min(stop_after, r.steps)
    while step < last:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, r.lr, r.warmup, r.steps)
        generator = torch.Generator().manual_seed(r.seed * 1_000_003 + step)
        index = torch.randint(0, len(latents), (r.batch,), generator=generator)
        batch_ids = ids[index].clone()
        dropped = torch.rand(r.batch, generator=generator) < r.caption_dropout
        batch_ids[dropped] = empty
        text = model.text_encoder(batch_ids)[0]  # [B, 77, hidden]
        loss = diffusion_loss(
            model.unet, noiser, latents[index], text, generator=generator, snr_gamma=r.snr_gamma, noise_offset=r.noise_offset
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if ema:
            ema.update(dict(model.named_parameters()), step)
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 25 == 0 or step == r.steps:
            log(f"unet step {step}/{r.steps} loss {running:.4f} {time.monotonic() - started:.0f}s")
        if time.monotonic() - last_save > checkpoint_seconds or step == last:
            save_checkpoint(Path(work_dir) / CHECKPOINT, model, optimizer, step, extra={"ema": ema.state_dict()} if ema else None)
            last_save = time.monotonic()
    if step < r.steps:
        return None
    if ema:
        ema.copy_to(dict(model.named_parameters()))
    return save_model(model.eval(), scheduler, Path(vae_folder), Path(out_folder))


def save_model(model: Trainable, scheduler, vae_folder: Path, folder: Path) -> Path:
    """Write a diffusers folder: model_index.json + tokenizer/ text_encoder/ vae/ unet/ scheduler/."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_text_encoder(model.text_encoder, tmp / "text_encoder")  # canonical text_model.* keys
    model.unet.save_pretrained(tmp / "unet")
    shutil.copytree(SD15_CONFIG_DIR / "tokenizer", tmp / "tokenizer")  # the real CLIP BPE files
    scheduler.save_pretrained(tmp / "scheduler")
    shutil.copytree(vae_folder, tmp / "vae")
    shutil.copy(SD15_CONFIG_DIR / "model_index.json", tmp / "model_index.json")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
