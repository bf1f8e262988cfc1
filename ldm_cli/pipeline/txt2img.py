"""Run a validated GenerateSettings end to end: load the model, sample, write PNGs, report."""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from ldm_cli.errors import UsageError, printable
from ldm_cli.pipeline.config import GenerateSettings, output_is_folder
from ldm_cli.models.devices import dtype_name, generation_dtype, resolve_device
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.files.images import save_png, slugify
from ldm_cli.models.loading import Components, load_components, resolve_source
from ldm_cli.models.performance import apply_fast_paths, check_device, cpu_has_native_bf16
from ldm_cli.models.token_merging import why_nothing_merges
from ldm_cli.pipeline.records.provenance import build_record, component_hashes, png_text
from ldm_cli.pipeline.records.recipe import output_size, plan_for_image
from ldm_cli.pipeline.loop.schedulers import name_for_class, sampler_warning
from ldm_cli.pipeline.starts.start import resolve_start
from ldm_cli.pipeline.batch import MANIFEST_NAME, append_line, batch_mode, manifest_line, plan_jobs, rank_device


def say(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)


def unet_config(source, single_file_config) -> dict | None:
    """The UNet's config without its weights (what --dtype auto looks at); None when unreadable."""
    from ldm_cli.pipeline.dry_run import read_configs

    try:
        return read_configs(source, single_file_config)[0]["unet"]
    except Exception:  # the load that follows reports what is wrong with the model
        return None


def load_model(settings: GenerateSettings, loras=None, embeddings=()) -> tuple[Components, str, object, float]:
    """Resolve device and dtype, load the components, install embeddings and merge LoRAs (default:
    settings.loras); returns them with the load time."""
    m = settings.model
    source = resolve_source(m.model, m.revision)
    openvino = settings.performance.backend == "openvino"
    device = "cpu" if openvino else rank_device(resolve_device(m.device))  # cuda:LOCAL_RANK under accelerate launch
    dtype, _ = generation_dtype(m.dtype, device, unet_config(source, m.config))  # auto: bf16 only where measured to pay
    if openvino:  # --dtype picks OpenVINO's precision; torch loads the weights (the export's source) in it
        from ldm_cli.models.backends import openvino_precision, torch_dtype_for

        precision, reason = openvino_precision(m.dtype)
        dtype = torch_dtype_for(precision)
    check_device(settings.performance, device)
    started = time.perf_counter()
    say(f"loading {source.spec} on {device} ({dtype_name(dtype)})")
    if dtype_name(dtype) == "bf16" and device == "cpu" and not cpu_has_native_bf16():
        say("warning: this CPU has no native bf16 (avx512_bf16/AMX), so bf16 runs slower than fp32 here; see README Performance")
    components = load_components(
        source, "cpu" if settings.performance.offload else device, dtype, offline=m.offline, allow_pickle=m.allow_pickle, single_file_config=m.config,
        variant=m.variant, vae=m.vae, ema=m.ema,
    )
    if embeddings:
        from ldm_cli.models.embeddings import install

        install(components.tokenizer, components.text_encoder, list(embeddings))
    from ldm_cli.models.lora import parse_lora_arg
    from ldm_cli.models.lora_checks import apply_loras_checked

    loras = [parse_lora_arg(v) for v in settings.loras] if loras is None else loras
    if loras:  # merged into the weights after loading, in the order given
        for spec, info in zip(loras, apply_loras_checked(components.unet, components.text_encoder, loras)):
            say(f"lora {spec.path.name}: {info.summary()}, scale {spec.scale:g}")
    apply_fast_paths(components, device, settings.performance)  # after LoRA merges: compile sees final weights
    if openvino:  # after LoRA merges and SDPA: the export sees the final weights
        from ldm_cli.models.openvino_unet import use_openvino

        use_openvino(components, loras, precision, reason, say)
        say(f"openvino: the UNet runs in OpenVINO at {precision} ({reason}); text encoder and VAE in torch {dtype_name(dtype)}")
    return components, device, dtype, time.perf_counter() - started


def resolve_plan(settings: GenerateSettings, components: Components) -> SamplingPlan:
    """Fill in what defaults to the model: native size and its own scheduler."""
    from ldm_cli.pipeline.records.recipe import check_clip_skip, check_hires_size, plan_fields
    from ldm_cli.pipeline.loop.guidance import resolved_guidance
    from ldm_cli.pipeline.loop.schedule_types import resolve_sampler
    from ldm_cli.pipeline.loop.schedulers import resolved_tcd_gamma

    native = components.native_size
    scheduler = settings.scheduler or name_for_class(components.scheduler_config.get("_class_name", ""))
    recipe = plan_fields(settings.recipe)
    scheduler, recipe["schedule_type"] = resolve_sampler(scheduler, recipe.get("schedule_type"))
    recipe["tcd_gamma"] = resolved_tcd_gamma(scheduler, recipe.get("tcd_gamma"), say)
    check_clip_skip(recipe.get("clip_skip", 1), components.text_encoder)
    plan = SamplingPlan(
        height=settings.height or native,
        width=settings.width or native,
        steps=settings.steps,
        guidance=resolved_guidance(scheduler, settings.guidance, settings.guidance_default, components.unet.config),
        scheduler=scheduler,
        negative_prompt=settings.negative_prompt,
        cache_interval=settings.cache_interval,
        token_merging=settings.token_merging,
        **recipe,
    )
    if plan.cache_interval > 1:
        from ldm_cli.pipeline.loop.deepcache import supports_caching

        why = supports_caching(components.unet)
        if why:
            say(f"warning: --cache-interval {plan.cache_interval} ignored: this UNet's layout is not SD's ({why}); every step runs in full")
            plan = replace(plan, cache_interval=1)  # the record says what ran
    why = why_nothing_merges(components.unet) if plan.token_merging else None
    if why:
        say(f"warning: --token-merging {plan.token_merging:g} ignored: {why}")
        plan = replace(plan, token_merging=0.0)  # the record says what ran
    check_hires_size(plan)
    check_timesteps(plan, components.scheduler_config)
    return plan


def check_timesteps(plan: SamplingPlan, scheduler_config: dict) -> None:
    """A schedule must stay within the model's training timesteps. "leading" spacing with steps_offset 1
    (SD1's config) at --steps equal to num_train_timesteps starts at timestep T, which DDPM, DDIM, PLMS,
    LCM and TCD index their alphas with (the sigma samplers interpolate and are fine)."""
    from ldm_cli.pipeline.loop.schedulers import build_scheduler

    scheduler = build_scheduler(plan.scheduler, scheduler_config, plan.schedule_type)
    most = scheduler.config.get("original_inference_steps")  # LCM's (and TCD's) skipping-step schedule
    if most is not None and plan.steps > most:
        raise UsageError(f"--steps {plan.steps}: {plan.scheduler} takes at most {most} steps on this model "
                         f"(its original_inference_steps); use --steps {most} or fewer (2-8 is typical)")
    scheduler.set_timesteps(plan.steps)
    last = int(scheduler.config.num_train_timesteps) - 1
    highest = int(scheduler.timesteps.max())
    if highest > last and not hasattr(scheduler, "sigmas"):  # sigma samplers interpolate; these index by t
        spacing = scheduler_config.get("timestep_spacing", "leading")
        raise UsageError(
            f"--steps {plan.steps}: {plan.scheduler} on this model's schedule ({spacing!r} spacing, steps_offset "
            f"{scheduler_config.get('steps_offset', 0)}) would start at timestep {highest}, past its last training "
            f"timestep {last}; use --steps {plan.steps - 1} or fewer")


def output_path(settings: GenerateSettings, prompt: str, seed: int) -> Path:
    out = settings.out or Path("outputs")
    if output_is_folder(out):
        return out / f"{slugify(prompt)}-{seed}.png"
    return out


def run(settings: GenerateSettings, loaded: tuple | None = None, image_hook=None) -> list[dict]:
    """Generate every requested image; returns one summary dict per image written.

    Prompts whose <lora:> tags name different LoRA sets run in groups, one model load per set.
    `loaded`: what load_model returned for these settings' model, to share one load (ldm grid).
    `image_hook(text_to_image, prompt, plan)`, if given, is a context manager around each image's
    sampling whose value has `write_beside(png_path, pixels) -> dict` (e.g. --attention-maps)."""
    from ldm_cli.pipeline.records.network_record import networks_record
    from ldm_cli.pipeline.records.networks import plan_networks

    start = resolve_start(settings)  # noise, init or masked init; its files are checked before the model loads
    for note in getattr(start, "notes", ()):
        say(f"note: --mask: {note}")
    start.check_source(resolve_source(settings.model.model, settings.model.revision))  # reads configs, not weights
    networks = plan_networks(settings)  # LoRAs and embeddings named by flags and prompts; no model yet
    for warning in networks.warnings:
        say(warning)
    base_seed = settings.seed
    if base_seed is None and not settings.resume:
        base_seed = secrets.randbelow(2**32)
        say(f"seed {base_seed} (random)")
    jobs, base_seed = plan_jobs(settings, base_seed)  # this process's share; --resume drops what exists (batch.py)
    manifest = (settings.out or Path("outputs")) / MANIFEST_NAME if batch_mode(settings) else None
    groups = networks.groups(jobs)
    summaries = []
    for index, (loras, group_jobs) in enumerate(groups):
        if index:
            say(f"next prompts use another LoRA set ({index + 1} of {len(groups)}): loading the model afresh")
        shared = loaded is not None and len(groups) == 1 and not networks.embeddings
        components, device, dtype, load_seconds = loaded if shared else load_model(
            settings, [u.spec for u in loras], networks.embeddings)
        hashes = component_hashes(components)
        start.prepare(components, hashes.get("vae") or hashes.get("checkpoint"))
        plan = start.fit_plan(resolve_plan(settings, components))
        if index == 0:  # no truncation warning: long prompts go to CLIP whole, in chunks of 75 tokens
            _check_recorded_model(settings, components)
            warning = sampler_warning(plan.scheduler, plan.steps, components.scheduler_config)
            if warning:
                say(warning)
        text_to_image = TextToImage(components, device, dtype, start)
        text_to_image.text_for_clip = networks.clip_text
        preview_map = None
        if settings.save_intermediates and settings.intermediates_mode == "preview":
            from ldm_cli.pipeline.codec.latents import fit_preview_map

            preview_map = fit_preview_map(components.vae)
        for job in group_jobs:
            number = len(summaries) + 1
            image_plan = plan_for_image(plan, job.seed - base_seed)
            summary = _make_one(settings, image_plan, text_to_image, job.prompt, job.seed, number, len(jobs),
                                preview_map, image_hook)
            summary["timings"]["model_load_s"] = round(load_seconds, 3)
            summary.update(start.record())  # "img2img" (and "inpaint") for images that started from a picture
            summary["networks"] = networks_record(networks, job.prompt, settings.negative_prompt)
            record = _write_and_report(settings, components, image_plan, hashes, device, dtype, summary, job.path)
            if manifest is not None:
                append_line(manifest, manifest_line(job, Path(summary["path"]), record["settings"], record["dtype"]))
            summaries.append(summary)
        components = text_to_image = None  # let this set's weights go before the next set loads
    return summaries


def _check_recorded_model(settings: GenerateSettings, components: Components) -> None:
    """--from an image made with another model: say so, naming both hashes."""
    from ldm_cli.pipeline.records.replay import model_mismatch

    message = model_mismatch(getattr(settings, "recorded_model_hash", None), components)
    if message:
        say(message)


def _make_one(settings, plan, text_to_image, prompt, seed, number, total, preview_map, image_hook=None) -> dict:
    from contextlib import nullcontext

    from tqdm import tqdm

    from ldm_cli.pipeline.loop.intermediates import IntermediateRecorder

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
        with image_hook(text_to_image, prompt, plan) if image_hook else nullcontext() as watch:
            result = text_to_image.generate(prompt, seed, plan, on_step)
    finally:
        bar.close()
    steps_run = bar.n
    return {
        "result": result,
        "recorder": recorder,
        "watch": watch,
        "timings": {
            "generate_s": round(result.seconds, 3),
            "steps_per_s": round(steps_run / result.seconds, 3) if result.seconds else None,
        },
    }


def image_record(settings, components, plan, hashes, device, dtype, result, timings, start_record: dict,
                 networks: dict | None) -> dict:
    """The JSON record of one image (what its PNG's `ldm` and `parameters` chunks are made from);
    `ldm serve` builds its PNGs with this too, so both write the same metadata."""
    resolved = {**asdict(plan), "num_images": settings.num_images}
    if settings.loras:
        resolved["loras"] = list(settings.loras)
    extra = dict(start_record)
    if networks:
        extra["networks"] = networks
    record = build_record(
        prompt=result.prompt, seed=result.seed, settings=resolved, components=components, hashes=hashes,
        device=device, dtype=dtype_name(dtype), timings=timings, extra=extra or None,
    )
    chosen, reason = generation_dtype(settings.model.dtype, device, components.unet.config)
    record["dtype_reason"] = reason if chosen == dtype else f"{dtype_name(dtype)}: as the model was loaded"
    backend = getattr(components.unet, "backend_record", None)  # only the OpenVINO stand-in has one
    if backend is not None:
        record["backend"] = backend()
        record["dtype_reason"] = (f"--backend openvino: text encoder and VAE in torch {dtype_name(dtype)}, "
                                  f"the UNet in OpenVINO at {record['backend']['precision']}")
    return record


def _write_and_report(settings, components, plan, hashes, device, dtype, summary, path=None) -> dict:
    result = summary.pop("result")
    recorder = summary.pop("recorder")
    watch = summary.pop("watch", None)
    networks = summary.pop("networks", None)
    record = image_record(settings, components, plan, hashes, device, dtype, result, summary["timings"],
                          {key: summary[key] for key in ("img2img", "inpaint") if key in summary}, networks)
    path = save_png(result.pixels, path or output_path(settings, result.prompt, result.seed), png_text(record))
    summary.update(path=str(path), seed=result.seed, prompt=result.prompt, seconds=result.seconds,
                   width=output_size(plan)[0], height=output_size(plan)[1], steps=plan.steps, guidance=plan.guidance,
                   scheduler=plan.scheduler, model=components.source.spec)
    if recorder is not None:
        summary["intermediates"] = str(recorder.write_beside(path))
    if watch is not None:
        summary.update(watch.write_beside(path, result.pixels))
    if settings.json_output:
        print(json.dumps(summary), flush=True)
    else:
        extra = f"  steps in {summary['intermediates']}" if recorder is not None else ""
        extra += f"  attention maps in {summary['attention_png']}" if watch is not None else ""
        print(f"saved {path}  seed {result.seed}  {result.seconds:.1f} s{extra}", flush=True)
    return record
