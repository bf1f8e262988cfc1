"""`ldm finetune`: one linear training loop, in sections.

    python -m ldm_cli finetune data/ --model demo -o runs/shapes --max-steps 500
    accelerate launch --num_processes 2 -m ldm_cli finetune data/ -o runs/shapes

 1. accelerator, model, data report            4. resume (weights, optimizer, RNG, step, data position)
 2. inputs: cached latents and caption embeddings  5. loop: DDPM Algorithm 1, checkpoints, validation
 3. what trains (LoRA or full + EMA), optimizer    6. export: LoRA file or diffusers folder + run.json

The learning rate is a pure function of the step and the data order a pure function of
(seed, batch number), so a checkpoint needs only the step and the RNG states to continue exactly.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ldm_cli.errors import INTERRUPT_EXIT, LdmError, UsageError
from ldm_cli.training import checkpoints as ckpt
from ldm_cli.training.run_record import finish_run_file, record_status, resume_hint, write_run_files
from ldm_cli.training.signals import install_signals, restore_signals
from ldm_cli.training.settings import DEFAULT_MAX_STEPS, FinetuneSettings


@dataclass
class Run:
    """Everything the loop touches, built once by `setup`."""

    settings: FinetuneSettings
    accelerator: object
    components: object
    report: object
    scheduler: object
    latents: object
    captions: object
    plan: object
    unet: object
    text_encoder: object
    params: dict  # "unet.<name>" / "text_encoder.<name>" -> trainable parameter
    optimizer: object
    ema: object
    generator: torch.Generator
    max_steps: int
    step: int = 0
    batch_number: int = 0  # batches consumed per process: the position in the data
    last_loss: float = math.nan
    last_checkpoint: Path | None = None
    stop_signal: list = field(default_factory=list)
    recording: bool = False  # this process wrote run.json, so it records how the run ends
    distill: object = None  # `ldm distill`: a training.distillation.Distillation
    objective: object = None  # None: DDPM's loss; else training.lcm.LcmObjective (`ldm distill`)


def train(settings: FinetuneSettings) -> int:
    run = setup(settings)
    try:
        resume(run)  # a refused resume raises here, before any record of the run is touched
        if run.accelerator.is_main_process:
            write_run_files(settings, run.report, run.components, settings.resolution or run.components.native_size,
                            run.distill.record() if run.distill else None)
            run.recording = True
        interrupted = loop(run)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without a checkpoint of this step
        record_status(run, "interrupted")
        say(run, f"stopped at once at step {run.step}; the last checkpoint is {run.last_checkpoint or 'none'}; "
                 f"continue with: {resume_hint(run)}")
        return INTERRUPT_EXIT
    except BaseException as exc:
        record_status(run, "failed", error=" ".join(str(exc).split()) or type(exc).__name__)
        raise
    finally:
        restore_signals()
    if interrupted:
        record_status(run, "interrupted")
        run.accelerator.wait_for_everyone()
        say(run, f"stopped by {interrupted} at step {run.step}; checkpoint {run.last_checkpoint}; "
                 f"continue with: {resume_hint(run)}")
        return INTERRUPT_EXIT
    try:
        export(run)
    except BaseException as exc:
        record_status(run, "failed", error=" ".join(str(exc).split()) or type(exc).__name__)
        raise
    return 0


# 1-3. set-up ---------------------------------------------------------------------------------


def setup(s: FinetuneSettings) -> Run:
    from accelerate import Accelerator
    from diffusers import DDPMScheduler

    from ldm_cli.files.hashing import cache_dir
    from ldm_cli.pipeline.records.provenance import component_hashes
    from ldm_cli.training.batches import BatchPlan
    from ldm_cli.training.cache import TensorCache
    from ldm_cli.training.inputs import Captions, Latents
    from ldm_cli.training.report import scan_data

    accelerator = Accelerator(mixed_precision=s.mixed_precision, cpu=_distributed_without_gpu())
    if s.mixed_precision == "fp16" and accelerator.device.type != "cuda":
        raise UsageError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no")
    components = _load_model(s, accelerator)
    resolution = s.resolution or components.native_size
    printer = (lambda line: print(line, file=sys.stderr, flush=True)) if accelerator.is_main_process else None
    report = scan_data(s, resolution, components.tokenizer, printer)
    if accelerator.is_main_process:
        ckpt.remove_stale_temporaries(s.output)  # debris of a run killed while writing a checkpoint
    hashes = component_hashes(components)
    cache = TensorCache(cache_dir() / "finetune")
    latents = Latents(report.items, components.vae, hashes.get("vae") or hashes.get("checkpoint", "?"), s.crop, s.flip, cache)
    captions = Captions(components.tokenizer, components.text_encoder, hashes.get("text_encoder") or hashes.get("checkpoint", "?"),
                        s.train_text_encoder, cache)
    with accelerator.main_process_first():  # the main process fills the disk cache, the others read it
        _precompute(accelerator, latents, captions, report)
    make_distillation = getattr(s, "distillation", None)  # DistillSettings: for `full` it swaps the student in
    distill = make_distillation(components) if make_distillation else None
    unet, text_encoder, params, ema = _trainable(s, components, accelerator, distill)
    optimizer = torch.optim.AdamW(list(params.values()), lr=s.learning_rate, weight_decay=1e-2)
    plan = BatchPlan(report.items, s.batch_size, s.seed)
    max_steps = _max_steps(s, plan.per_epoch, accelerator.num_processes)
    unet, text_encoder, optimizer = _prepare(accelerator, s, unet, text_encoder, optimizer)
    generator = torch.Generator().manual_seed(s.seed * 7919 + accelerator.process_index)
    run = Run(s, accelerator, components, report, DDPMScheduler.from_config(components.scheduler_config), latents, captions,
              plan, unet, text_encoder, params, optimizer, ema, generator, max_steps, distill=distill)
    run.objective = distill.objective(run.scheduler) if distill else None
    install_signals(run)
    return run


def _distributed_without_gpu() -> bool:
    """Several processes (torchrun / accelerate launch) on a machine without CUDA: use CPU and gloo."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _load_model(s: FinetuneSettings, accelerator):
    from ldm_cli.models.loading import load_components, resolve_source

    m = s.model
    source = resolve_source(m.model, m.revision)
    say_main(accelerator, f"loading {source.spec} on {accelerator.device} (training in fp32"
             + (f", {s.mixed_precision} autocast)" if s.mixed_precision != "no" else ")"))
    return load_components(source, accelerator.device, torch.float32, offline=m.offline,
                           allow_pickle=m.allow_pickle, single_file_config=m.config)


def _precompute(accelerator, latents, captions, report) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(report.items), desc="caching latents", unit="img", file=sys.stderr, leave=False,
               disable=not accelerator.is_main_process or latents.crop != "center")
    latents.precompute(lambda: bar.update(1))
    bar.close()
    captions.precompute(item.caption for item in report.items)


def _trainable(s: FinetuneSettings, components, accelerator, distill=None):
    """Freeze what does not train; add LoRA adapters or unfreeze the UNet. Returns models, params, EMA
    (for a full distillation: its target network)."""
    from ldm_cli.training.ema import EMA
    from ldm_cli.training.methods import TEXT_TARGETS, UNET_TARGETS, add_lora, trainable_parameters

    unet, text_encoder = components.unet, components.text_encoder
    components.vae.requires_grad_(False)
    torch.manual_seed(s.seed)  # adapter initialisation is part of the run's seed
    if s.method == "lora":
        add_lora(unet, s.rank, s.lora_alpha, UNET_TARGETS)
        if s.train_text_encoder:
            add_lora(text_encoder, s.rank, s.lora_alpha, TEXT_TARGETS)
    else:
        unet.requires_grad_(True)
        text_encoder.requires_grad_(s.train_text_encoder)
    if s.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if s.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    unet.train()
    text_encoder.train(s.train_text_encoder)
    params = {f"unet.{k}": v for k, v in trainable_parameters(unet).items()}
    params.update({f"text_encoder.{k}": v for k, v in trainable_parameters(text_encoder).items()})
    if distill is not None:
        ema = distill.target_ema(unet, params)
    else:
        ema = EMA(params, s.ema_decay) if s.method == "full" and s.ema else None
    count = sum(p.numel() for p in params.values())
    say_main(accelerator, f"training {count:,} parameters ({s.method}"
             + (f", rank {s.rank}, alpha {s.lora_alpha:g}" if s.method == "lora" else "")
             + (", with the text encoder" if s.train_text_encoder else "") + ")")
    return unet, text_encoder, params, ema


def _prepare(accelerator, s: FinetuneSettings, unet, text_encoder, optimizer):
    if s.train_text_encoder:
        return accelerator.prepare(unet, text_encoder, optimizer)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    return unet, text_encoder, optimizer


def _max_steps(s: FinetuneSettings, batches_per_epoch: int, processes: int) -> int:
    per_step = processes * s.grad_accum
    from_epochs = max(1, math.ceil(s.epochs * batches_per_epoch / per_step)) if s.epochs else None
    if s.max_steps is not None and from_epochs is not None:
        return min(s.max_steps, from_epochs)
    return s.max_steps or from_epochs or DEFAULT_MAX_STEPS


def lr_at(s: FinetuneSettings, step: int, max_steps: int) -> float:
    """Linear warm-up, then constant or cosine decay to zero."""
    if s.lr_warmup and step < s.lr_warmup:
        return s.learning_rate * (step + 1) / s.lr_warmup
    if s.lr_schedule == "cosine":
        progress = (step - s.lr_warmup) / max(1, max_steps - s.lr_warmup)
        return s.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return s.learning_rate


# 4. resume ------------------------------------------------------------------------------------


def resume(run: Run) -> None:
    s = run.settings
    if s.resume is None:
        return
    folder = ckpt.latest_checkpoint(s.output) if s.resume == "latest" else Path(s.resume)
    if folder is None:
        say(run, f"--resume latest: no complete checkpoint in {ckpt.checkpoints_dir(s.output)}; starting at step 0")
        return
    state, tensors, objects = ckpt.load_checkpoint(folder)
    _check_compatible(state, s, folder)
    with torch.no_grad():
        for name, p in run.params.items():
            if name not in tensors["trainable"]:
                raise LdmError(f"checkpoint {folder} lacks the weight {name}; it was made by another kind of run")
            p.copy_(tensors["trainable"][name])
    if run.ema is not None:
        run.ema.load_state_dict(tensors["ema"])
    run.optimizer.load_state_dict(objects["optimizer"]["optimizer"])
    if run.accelerator.scaler is not None and objects["optimizer"].get("scaler"):
        run.accelerator.scaler.load_state_dict(objects["optimizer"]["scaler"])
    rank = run.accelerator.process_index
    if state["processes"] == run.accelerator.num_processes:
        run.generator.set_state(tensors["rng"][f"generator.{rank}"].clone())
        torch.set_rng_state(tensors["rng"][f"torch.{rank}"].clone())
    else:
        say(run, f"warning: the checkpoint was made with {state['processes']} processes, this run has "
                 f"{run.accelerator.num_processes}; the data order and noise continue differently")
    run.step, run.batch_number, run.last_checkpoint = state["step"], state["batch_number"], folder
    run.last_loss = state.get("loss", math.nan)
    say(run, f"resumed from {folder} at step {run.step}")


def _check_compatible(state: dict, s: FinetuneSettings, folder: Path) -> None:
    saved = state["settings"]
    for key, flag in (("method", "--method"), ("rank", "--rank"), ("train_text_encoder", "--train-text-encoder")):
        if saved.get(key) != getattr(s, key):
            raise UsageError(f"--resume {folder}: it was trained with {flag} {saved.get(key)}, this run has "
                             f"{getattr(s, key)}; use the same {flag} or start a new --output")


# 5. the loop ----------------------------------------------------------------------------------


def loop(run: Run) -> str | None:
    """Train until max_steps; returns the signal name if interrupted (after saving a checkpoint)."""
    from tqdm import tqdm

    from ldm_cli.training.logs import TrainLog

    s, acc = run.settings, run.accelerator
    log = TrainLog(s.output, run.step) if acc.is_main_process else None
    bar = tqdm(total=run.max_steps, initial=run.step, desc=getattr(s, "command", "ldm finetune").split()[-1], unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=not acc.is_main_process)
    images_per_step = s.batch_size * s.grad_accum * acc.num_processes
    started, start_step = time.perf_counter(), run.step
    try:
        while run.step < run.max_steps:
            step_started = time.perf_counter()
            loss, stop = train_step(run)
            run.last_loss = loss
            rate = images_per_step / max(time.perf_counter() - step_started, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr_at(s, run.step - 1, run.max_steps):.2e}", img_s=f"{rate:.1f}")
            if log is not None:
                log.write({"step": run.step, "epoch": run.plan.batch(run.batch_number * acc.num_processes)[0], "loss": loss,
                           "lr": lr_at(s, run.step - 1, run.max_steps), "images_per_s": round(rate, 3),
                           "elapsed_s": round(time.perf_counter() - started, 3)})
            if stop or run.step % s.checkpoint_every == 0 or run.step == run.max_steps:
                save(run)
            if stop:
                return stop
            if s.validate_every and run.step % s.validate_every == 0 and run.step < run.max_steps:
                validate(run)
    finally:
        bar.close()
        if log is not None:
            log.close()
    say(run, f"trained {run.step - start_step} steps in {time.perf_counter() - started:.1f} s; final loss {run.last_loss:.4f}")
    return None


def train_step(run: Run) -> tuple[float, str | None]:
    """One optimizer step over grad_accum batches (DDPM Algorithm 1); returns mean loss and a stop signal."""
    from ldm_cli.training.objective import diffusion_loss

    s, acc = run.settings, run.accelerator
    models = [run.unet] + ([run.text_encoder] if s.train_text_encoder else [])
    total = torch.zeros((), device=acc.device)
    for k in range(s.grad_accum):
        _, indices = run.plan.batch(run.batch_number * acc.num_processes + acc.process_index)
        run.batch_number += 1
        latents = run.latents.batch(indices, run.generator, acc.device)  # [B, 4, h, w]
        drop = (torch.rand(len(indices), generator=run.generator) < run.settings.dropout).tolist()
        captions = ["" if d else run.report.items[i].caption for i, d in zip(indices, drop)]
        with contextlib.ExitStack() as stack:
            if k < s.grad_accum - 1:  # gradients are all-reduced only on the last batch of the step
                for model in models:
                    stack.enter_context(acc.no_sync(model))
            embeddings = run.captions.batch(captions, acc.device)  # [B, 77, D]
            if run.objective is not None:
                uncond = run.captions.batch([""] * len(indices), acc.device)
                with acc.autocast():  # the teacher and target are not prepared modules
                    loss = run.objective(run.unet, run.distill.networks(acc.unwrap_model(run.unet)), latents,
                                         embeddings, uncond, run.generator)
            else:
                loss = diffusion_loss(run.unet, run.scheduler, latents, embeddings, run.generator, s.snr_gamma, s.noise_offset)
            acc.backward(loss / s.grad_accum)
        total += loss.detach().float() / s.grad_accum
    flags = acc.reduce(torch.stack([total, torch.tensor(float(bool(run.stop_signal)), device=acc.device)]), "sum")
    loss_value = flags[0].item() / acc.num_processes
    if not math.isfinite(loss_value):
        raise LdmError(
            f"the loss became {loss_value} at step {run.step + 1}; stopped without saving. The last good checkpoint is "
            f"{run.last_checkpoint or 'none (no checkpoint yet)'}; lower --lr or use --mixed-precision no, then --resume latest"
        )
    if s.max_grad_norm:
        acc.clip_grad_norm_(list(run.params.values()), s.max_grad_norm)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(s, run.step, run.max_steps)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    if run.ema is not None:
        run.ema.update(run.params, run.step)
    stop = (run.stop_signal[0] if run.stop_signal else "a signal on another process") if flags[1].item() > 0 else None
    return loss_value, stop


def save(run: Run) -> None:
    """Every process hands in its RNG state; the main process writes the checkpoint."""
    acc, s = run.accelerator, run.settings
    rng = {}
    for name, state in (("generator", run.generator.get_state()), ("torch", torch.get_rng_state())):
        gathered = acc.gather(state[None].to(acc.device)).cpu()  # [processes, N]
        rng.update({f"{name}.{r}": gathered[r].clone() for r in range(gathered.shape[0])})
    if acc.is_main_process:
        tensors = {"trainable": {k: v.detach() for k, v in run.params.items()}, "rng": rng}
        if run.ema is not None:
            tensors["ema"] = run.ema.state_dict()
        optimizer = {"optimizer": run.optimizer.state_dict(),
                     "scaler": acc.scaler.state_dict() if acc.scaler is not None else None}
        state = {"step": run.step, "batch_number": run.batch_number, "loss": run.last_loss,
                 "processes": acc.num_processes, "settings": s.to_record()}
        run.last_checkpoint = ckpt.save_checkpoint(s.output, run.step, tensors, {"optimizer": optimizer}, state, s.keep)
    else:
        run.last_checkpoint = ckpt.checkpoints_dir(s.output) / f"checkpoint-{run.step:06d}"
    acc.wait_for_everyone()


def validate(run: Run) -> Path | None:
    s, acc = run.settings, run.accelerator
    path = None
    if s.validation_prompts and acc.is_main_process:
        from ldm_cli.training.validation import render_grid

        with acc.autocast():
            path = render_grid(run.components, acc.unwrap_model(run.unet), acc.unwrap_model(run.text_encoder),
                               s.validation_prompts, s.seed, s.validation_steps, run.step, s.output)
        say(run, f"validation images: {path}")
    acc.wait_for_everyone()
    return path


# 6. export ------------------------------------------------------------------------------------


def export(run: Run) -> None:
    s, acc = run.settings, run.accelerator
    _check_processes_agree(run)
    grid = validate(run)
    if acc.is_main_process:
        from ldm_cli.training.methods import lora_state, save_full_model, save_lora

        unet, text_encoder = acc.unwrap_model(run.unet), acc.unwrap_model(run.text_encoder)
        if s.method == "lora":
            tensors = lora_state(unet, text_encoder if s.train_text_encoder else None, s.rank, s.lora_alpha, s.lora_format == "kohya")
            metadata = {"ldm.format": s.lora_format, "ldm.base_model": run.components.source.spec,
                        "ss_network_dim": str(s.rank), "ss_network_alpha": str(s.lora_alpha), "ldm.steps": str(run.step),
                        **getattr(s, "lora_metadata", {})}
            result = save_lora(lora_path(s), tensors, metadata)
        else:
            ema = None
            if run.ema is not None:
                ema = {k[len("unet."):]: v for k, v in run.ema.state_dict().items() if k.startswith("unet.")}
            save_full_model(s.output, run.components, unet, text_encoder, ema,
                            **(run.distill.export(run.components.scheduler_config) if run.distill else {}))
            result = s.output
        finish_run_file(s, run, result, grid)
        say(run, f"saved {result}")
    acc.wait_for_everyone()


def _check_processes_agree(run: Run) -> None:
    """Every process must end with the same weights (DDP keeps them in step); refuse to export otherwise."""
    acc = run.accelerator
    if acc.num_processes == 1:
        return
    total = torch.stack([p.detach().double().sum() for p in run.params.values()]).sum()
    sums = acc.gather(total[None].to(acc.device)).cpu()
    if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-9, atol=0):
        raise LdmError(f"the {acc.num_processes} processes ended with different weights ({sums.tolist()}); nothing exported")


def lora_path(s: FinetuneSettings) -> Path:
    return s.output / f"{s.output.resolve().name}.safetensors"


def say(run: Run, message: str) -> None:
    say_main(run.accelerator, message)


def say_main(accelerator, message: str) -> None:
    if accelerator.is_main_process:
        print(message, file=sys.stderr, flush=True)
