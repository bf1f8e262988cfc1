"""`ldm finetune`: a folder of captioned images -> a LoRA file or a fine-tuned model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldm_cli.options import AllowPickleOpt, ConfigOpt, ModelOpt, OfflineOpt, RevisionOpt

EXAMPLES = """Examples:

  ldm finetune data/ --check

  ldm finetune data/ --model demo -o runs/shapes --max-steps 500 --validation-prompt "a red circle"

  ldm finetune data/ --method full --epochs 10 --mixed-precision bf16 --gradient-checkpointing

  ldm finetune data/ -o runs/shapes --resume latest

  accelerate launch --num_processes 2 -m ldm_cli finetune data/ -o runs/shapes
"""


def register(app: typer.Typer) -> None:
    app.command("finetune", help="Fine-tune on a folder of captioned images (LoRA or full).", epilog=EXAMPLES)(finetune)


def finetune(
    data: Annotated[Path, typer.Argument(help="Folder of images with .txt/.caption sidecars or a metadata.jsonl.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run folder for the result, checkpoints and logs [default: runs/<DATA name>].")] = None,
    check: Annotated[bool, typer.Option("--check", help="Only scan the data and print the report; train nothing.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Abort if the report lists any bad item or warning.")] = False,
    method: Annotated[str, typer.Option("--method", help="lora (small adapter file) or full (whole UNet, with EMA).")] = "lora",
    rank: Annotated[Optional[int], typer.Option("--rank", help="LoRA rank (adapter width) [default: 16].", show_default=False)] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="LoRA alpha; the update is scaled by alpha/rank [default: rank].")] = None,
    lora_format: Annotated[Optional[str], typer.Option("--lora-format", help="LoRA file keys: diffusers (peft) or kohya (A1111/ComfyUI) [default: diffusers].", show_default=False)] = None,
    train_text_encoder: Annotated[bool, typer.Option("--train-text-encoder", help="Also train the CLIP text encoder (LoRA or full).")] = False,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Optimizer steps to train [default: 1000, or --epochs].")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Passes over the data (stops at --max-steps if that comes first).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch per process.")] = 1,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Batches accumulated per optimizer step.")] = 1,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate [default: 1e-4 lora, 1e-5 full].")] = None,
    lr_schedule: Annotated[str, typer.Option("--lr-schedule", help="constant or cosine (after the warm-up).")] = "constant",
    lr_warmup: Annotated[int, typer.Option("--lr-warmup", help="Steps of linear learning-rate warm-up.")] = 0,
    max_grad_norm: Annotated[float, typer.Option("--max-grad-norm", help="Clip the gradient norm to this.")] = 1.0,
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Training size, multiple of 64 [default: the model's native size].")] = None,
    crop: Annotated[str, typer.Option("--crop", help="center (latents cached) or random (encoded every step).")] = "center",
    flip: Annotated[bool, typer.Option("--flip", help="Random horizontal flips (both orientations are cached).")] = False,
    no_buckets: Annotated[bool, typer.Option("--no-buckets", help="Crop everything square instead of aspect-ratio buckets.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for data order, noise and initialisation.")] = 0,
    snr_gamma: Annotated[Optional[float], typer.Option("--snr-gamma", help="Min-SNR loss weighting gamma (5 is typical) [default: off].")] = None,
    noise_offset: Annotated[float, typer.Option("--noise-offset", help="Offset noise strength (0.05-0.1 helps very dark/bright images).")] = 0.0,
    caption_dropout: Annotated[Optional[float], typer.Option("--caption-dropout", help="Chance of training a sample with an empty caption [default: 0.1 full, 0 lora].")] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Full fine-tuning: export the raw weights instead of their EMA.")] = False,
    ema_decay: Annotated[Optional[float], typer.Option("--ema-decay", help="EMA decay for full fine-tuning [default: 0.9999].", show_default=False)] = None,
    mixed_precision: Annotated[str, typer.Option("--mixed-precision", help="no, fp16 (CUDA) or bf16.")] = "no",
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Recompute activations to save memory.")] = False,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Save a resumable checkpoint every N steps.")] = 500,
    keep: Annotated[int, typer.Option("--keep", help="Keep the newest K checkpoints.")] = 3,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue from 'latest' in --output or a checkpoint folder.")] = None,
    validate_every: Annotated[int, typer.Option("--validate-every", help="Render validation images every N steps (0: only at the end).")] = 0,
    validation_prompt: Annotated[Optional[list[str]], typer.Option("--validation-prompt", help="Prompt for validation images; repeatable [default: prompts/validation.txt].")] = None,
    validation_steps: Annotated[int, typer.Option("--validation-steps", help="Sampling steps per validation image.")] = 25,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    allow_pickle: AllowPickleOpt = False,
    config: ConfigOpt = None,
) -> int:
    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.training.settings import FinetuneSettings, method_options, validate_finetune

    settings = FinetuneSettings(
        data=data, output=output or Path("runs") / (data.resolve().name or "finetune"), method=method,
        **method_options(method, rank=rank, alpha=alpha, lora_format=lora_format, ema=False if no_ema else None,
                         ema_decay=ema_decay),
        train_text_encoder=train_text_encoder, max_steps=max_steps,
        epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=lr, lr_schedule=lr_schedule,
        lr_warmup=lr_warmup, max_grad_norm=max_grad_norm, resolution=resolution, crop=crop, flip=flip,
        buckets=not no_buckets, seed=seed, snr_gamma=snr_gamma, noise_offset=noise_offset,
        caption_dropout=caption_dropout, mixed_precision=mixed_precision,
        gradient_checkpointing=gradient_checkpointing, checkpoint_every=checkpoint_every, keep=keep,
        resume=resume, validate_every=validate_every, validation_prompts=_validation_prompts(validation_prompt),
        validation_steps=validation_steps, check_only=check, strict=strict,
        model=ModelSettings(model=model, revision=revision, offline=offline, allow_pickle=allow_pickle, config=config),
    )
    validate_finetune(settings)
    if check:
        from ldm_cli.training.report import check_data

        return check_data(settings)
    from ldm_cli.training.trainer import train

    return train(settings)


def _validation_prompts(given: list[str] | None) -> tuple[str, ...]:
    if given:
        return tuple(given)
    from ldm_cli.commands.generate_settings import read_prompts_file
    from ldm_cli.training.settings import default_validation_file

    path = default_validation_file()
    return read_prompts_file(path) if path is not None else ()
