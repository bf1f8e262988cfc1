"""Run a validated GenerateSettings end to end: load the model, sample, write PNGs, report."""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ldm_cli.errors import printable
from ldm_cli.pipeline import img2img
from ldm_cli.pipeline.config import GenerateSettings, output_is_folder
from ldm_cli.models.devices import dtype_name, resolve_device, resolve_dtype
from ldm_cli.pipeline.generation import SamplingPlan
from ldm_cli.files.images import save_png, slugify
from ldm_cli.models.loading import Components, load_components, resolve_source
from ldm_cli.models.performance import apply_fast_paths, check_device, cpu_has_native_bf16
from ldm_cli.pipeline.provenance import build_record, component_hashes, png_text
from ldm_cli.pipeline.schedulers import name_for_class, sampler_warning
from ldm_cli.pipeline.text import dropped_words


def say(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)


def load_model(settings: GenerateSettings) -> tuple[Components, str, object, float]:
    """Resolve device and dtype, load the components; returns them with the load time."""
    m = settings.model
    source = resolve_source(m.model, m.revision)
    device = resolve_device(m.device)
    dtype = resolve_dtype(m.dtype, device)
    check_device(settings.performance, device)
    started = time.perf_counter()
    say(f"loading {source.spec} on {device} ({dtype_name(dtype)})")
    if dtype_name(dtype) == "bf16" and device == "cpu" and not cpu_has_native_bf16():
        say("warning: this CPU has no native bf16 (avx512_bf16/AMX), so bf16 runs slower than fp32 here; see README Performance")
    components = load_components(
        source, "cpu" if settings.performance.offload else device, dtype, offline=m.offline, allow_pickle=m.allow_pickle, single_file_config=m.config
    )
    if settings.loras:  # merged into the weights after loading, in the order given
        from ldm_cli.models.lora import parse_lora_arg
        from ldm_cli.models.lora_checks import apply_loras_checked

        apply_loras_checked(components.unet, components.text_encoder, [parse_lora_arg(v) for v in settings.loras])
    apply_fast_paths(components, device, settings.performance)  # after LoRA merges: compile sees final weights
    return components, device, dtype, time.perf_counter() - started


def resolve_plan(settings: GenerateSettings, components: Components) -> SamplingPlan:
    """Fill in what defaults to the model: native size and its own scheduler."""
    native = components.native_size
    scheduler = settings.scheduler or name_for_class(components.scheduler_config.get("_class_name", ""))
    return SamplingPlan(
        height=settings.height or native,
        width=settings.width or native,
        steps=settings.steps,
        guidance=settings.guidance,
        scheduler=scheduler,
        negative_prompt=settings.negative_prompt,
    )


def warn_truncation(components: Components, prompts) -> None:
    for prompt in {*prompts}:
        dropped = dropped_words(components.tokenizer, prompt)
        if dropped:
            limit = components.tokenizer.model_max_length
            say(f"warning: prompt longer than {limit} tokens; these words were dropped: {dropped!r}")


def output_path(settings: GenerateSettings, prompt: str, seed: int) -> Path:
    out = settings.out or Path("outputs")
    if output_is_folder(out):
        return out / f"{slugify(prompt)}-{seed}.png"
    return out


def run(settings: GenerateSettings) -> list[dict]:
    """Generate every requested image; returns one summary dict per image written."""
    init = img2img.load_init(settings)  # None for text-to-image; the init file is checked before the model loads
    components, device, dtype, load_seconds = load_model(settings)
    plan = img2img.fit_plan(resolve_plan(settings, components), init)
    warn_truncation(components, settings.prompts + (settings.negative_prompt,))
    warning = sampler_warning(plan.scheduler, plan.steps, components.scheduler_config)
    if warning:
        say(warning)
    hashes = component_hashes(components)
    text_to_image = img2img.make_generator(components, device, dtype, init, hashes.get("vae") or hashes.get("checkpoint"))
    preview_map = None
    if settings.save_intermediates and settings.intermediates_mode == "preview":
        from ldm_cli.pipeline.latents import fit_preview_map

        preview_map = fit_preview_map(components.vae)
    base_seed = settings.seed if settings.seed is not None else secrets.randbelow(2**32)
    if settings.seed is None:
        say(f"seed {base_seed} (random)")
    summaries = []
    jobs = [(prompt, base_seed + i) for prompt in settings.prompts for i in range(settings.num_images)]
    for number, (prompt, seed) in enumerate(jobs, start=1):
        summary = _make_one(settings, plan, text_to_image, prompt, seed, number, len(jobs), preview_map)
        summary["timings"]["model_load_s"] = round(load_seconds, 3)
        if init is not None:
            summary["img2img"] = init.record()
        _write_and_report(settings, components, plan, hashes, device, dtype, summary)
        summaries.append(summary)
    return summaries


def _make_one(settings, plan, text_to_image, prompt, seed, number, total, preview_map) -> dict:
    from tqdm import tqdm

    from ldm_cli.pipeline.intermediates import IntermediateRecorder

    recorder = None
    if settings.save_intermediates:
        recorder = IntermediateRecorder(text_to_image.components.vae, settings.intermediates_mode, settings.every, preview_map)
    bar = tqdm(desc=f"image {number}/{total}", unit="step", file=sys.stderr, leave=False, dynamic_ncols=True)

    def on_step(info):
        bar.total = info.total
        bar.update(1)
        if recorder is not None:
            recorder(info)

    try:
        result = text_to_image.generate(prompt, seed, plan, on_step)
    finally:
        bar.close()
    steps_run = bar.n
    return {
        "result": result,
        "recorder": recorder,
        "timings": {
            "generate_s": round(result.seconds, 3),
            "steps_per_s": round(steps_run / result.seconds, 3) if result.seconds else None,
        },
    }


def _write_and_report(settings, components, plan, hashes, device, dtype, summary) -> None:
    result = summary.pop("result")
    recorder = summary.pop("recorder")
    resolved = {**asdict(plan), "num_images": settings.num_images}
    if settings.loras:
        resolved["loras"] = list(settings.loras)
    record = build_record(
        prompt=result.prompt, seed=result.seed, settings=resolved, components=components, hashes=hashes,
        device=device, dtype=dtype_name(dtype), timings=summary["timings"],
        extra={"img2img": summary["img2img"]} if "img2img" in summary else None,
    )
    path = save_png(result.pixels, output_path(settings, result.prompt, result.seed), png_text(record))
    summary.update(path=str(path), seed=result.seed, prompt=result.prompt, seconds=result.seconds,
                   width=plan.width, height=plan.height, steps=plan.steps, guidance=plan.guidance,
                   scheduler=plan.scheduler, model=components.source.spec)
    if recorder is not None:
        summary["intermediates"] = str(recorder.write_beside(path))
    if settings.json_output:
        print(json.dumps(summary), flush=True)
    else:
        extra = f"  steps in {summary['intermediates']}" if recorder is not None else ""
        print(f"saved {path}  seed {result.seed}  {result.seconds:.1f} s{extra}", flush=True)
