"""`ldm distill`: latent consistency distillation of a model into an LCM-LoRA or a full LCM UNet, on a
folder of captioned images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldm_cli.options import AllowPickleOpt, ConfigOpt, ModelOpt, OfflineOpt, RevisionOpt

EXAMPLES = """Examples:

  ldm distill data/ --model demo -o runs/demo-lcm --max-steps 2000

  ldm distill data/ --model demo -o runs/demo-lcm --resume latest

  ldm generate "a red circle" --model demo --lora runs/demo-lcm/demo-lcm.safetensors --scheduler lcm --steps 4

  ldm distill data/ --model demo -o runs/demo-lcm-full --method full --max-steps 2000

  ldm generate "a red circle" --model runs/demo-lcm-full --steps 4
"""


def register(app: typer.Typer) -> None:
    app.command("distill", help="Distill a model into a few-step LCM-LoRA or LCM model (latent consistency distillation).",
                epilog=EXAMPLES)(distill)


def distill(
    data: Annotated[Path, typer.Argument(help="Folder of images with .txt/.caption sidecars or a metadata.jsonl.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run folder for the LoRA or model, checkpoints and logs [default: runs/<DATA name>-lcm].")] = None,
    method: Annotated[str, typer.Option("--method", help="lora (an LCM-LoRA file) or full (a whole LCM model folder: UNet with a w embedding, EMA target).")] = "lora",
    rank: Annotated[Optional[int], typer.Option("--rank", help="LoRA rank (adapter width) [default: 16].", show_default=False)] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="LoRA alpha; the update is scaled by alpha/rank [default: rank].")] = None,
    lora_format: Annotated[Optional[str], typer.Option("--lora-format", help="LoRA file keys: diffusers (peft) or kohya (A1111/ComfyUI) [default: diffusers].", show_default=False)] = None,
    ema_decay: Annotated[Optional[float], typer.Option("--ema-decay", help="--method full: decay of the EMA target network [default: 0.95].", show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Optimizer steps to train [default: 1000, or --epochs].")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Passes over the data (stops at --max-steps if that comes first).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch per process.")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Batches accumulated per optimizer step.")] = 1,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate [default: 1e-4 lora, 1e-5 full].", show_default=False)] = None,
    lr_schedule: Annotated[str, typer.Option("--lr-schedule", help="constant or cosine (after the warm-up).")] = "constant",
    lr_warmup: Annotated[int, typer.Option("--lr-warmup", help="Steps of linear learning-rate warm-up.")] = 0,
    max_grad_norm: Annotated[float, typer.Option("--max-grad-norm", help="Clip the gradient norm to this.")] = 1.0,
    w_min: Annotated[float, typer.Option("--w-min", help="Lowest teacher guidance w (CFG scale w + 1).")] = 3.0,
    w_max: Annotated[float, typer.Option("--w-max", help="Highest teacher guidance w (CFG scale w + 1).")] = 15.0,
    ddim_timesteps: Annotated[int, typer.Option("--ddim-timesteps", help="Teacher DDIM solver steps N over the schedule (skip T/N).")] = 50,
    loss: Annotated[str, typer.Option("--loss", help="huber or l2.")] = "huber",
    huber_c: Annotated[float, typer.Option("--huber-c", help="Huber loss constant c.")] = 0.001,
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Training size, multiple of 64 [default: the model's native size].")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for data order, noise and initialisation.")] = 0,
    mixed_precision: Annotated[str, typer.Option("--mixed-precision", help="no, fp16 (CUDA) or bf16.")] = "no",
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Save a resumable checkpoint every N steps.")] = 500,
    keep: Annotated[int, typer.Option("--keep", help="Keep the newest K checkpoints.")] = 3,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue from 'latest' in --output or a checkpoint folder.")] = None,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    allow_pickle: AllowPickleOpt = False,
    config: ConfigOpt = None,
) -> int:
    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.training.distill_settings import DistillSettings, validate_distill
    from ldm_cli.training.settings import method_options

    settings = DistillSettings(
        data=data, output=output or Path("runs") / f"{data.resolve().name or 'distill'}-lcm", method=method,
        **method_options(method, rank=rank, alpha=alpha, lora_format=lora_format, ema_decay=ema_decay),
        max_steps=max_steps, epochs=epochs, batch_size=batch_size,
        grad_accum=grad_accum, lr=lr, lr_schedule=lr_schedule, lr_warmup=lr_warmup, max_grad_norm=max_grad_norm,
        resolution=resolution, seed=seed, caption_dropout=0.0, mixed_precision=mixed_precision,
        checkpoint_every=checkpoint_every, keep=keep, resume=resume, validation_prompts=(),
        w_min=w_min, w_max=w_max, ddim_timesteps=ddim_timesteps, loss_type=loss, huber_c=huber_c,
        model=ModelSettings(model=model, revision=revision, offline=offline, allow_pickle=allow_pickle, config=config),
    )
    validate_distill(settings)
    from ldm_cli.training.trainer import train

    return train(settings)
