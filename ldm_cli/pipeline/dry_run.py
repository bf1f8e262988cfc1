"""`ldm generate --dry-run`: the resolved settings, the latent shape and a memory estimate.

Only configs are read (from the model folder, the local Hub cache or the bundled SD1.5 configs);
no weights are loaded. Parameters are counted by building the models on the meta device.

Memory model (bytes), calibrated on CPU by `make bench` (see benchmarks/results):
    weights  = parameters x bytes per element of --dtype
    unet     = K_UNET x batch x C0 x h x w x bytes       batch 2 with guidance; C0 the UNet's first width
    vae      = K_VAE x C_vae x H x W x bytes             H x W capped at one tile with --vae-tiling
    peak     = runtime + weights + max(unet, vae)        with --offload, GPU: the largest model + activations
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from ldm_cli.models.loading import SD15_CONFIG_DIR, ModelSource, resolve_source
from ldm_cli.models.performance import check_device

K_UNET = 24
K_VAE = 8  # measured: SD1.5's VAE decoding 768x768 peaks at 2.3 GB over its weights, 7.6 x 128 x 768^2 x 4 bytes
RUNTIME_BYTES = {"cpu": 400 * 2**20, "cuda": 500 * 2**20}  # interpreter + libraries, or the CUDA context
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
_CONFIG_FILES = {"unet": "unet/config.json", "vae": "vae/config.json", "text_encoder": "text_encoder/config.json",
                 "scheduler": "scheduler/scheduler_config.json"}


def describe(settings) -> dict:
    """Everything the run would use, resolved without loading weights."""
    from ldm_cli.models.devices import dtype_name, generation_dtype, resolve_device
    from ldm_cli.pipeline.loop.guidance import resolved_guidance, uses_unconditional_pass
    from ldm_cli.pipeline.loop.schedulers import name_for_class, resolved_tcd_gamma

    m = settings.model
    source = resolve_source(m.model, m.revision)
    openvino = settings.performance.backend == "openvino"
    device = "cpu" if openvino else resolve_device(m.device)
    check_device(settings.performance, device)
    configs, config_note = read_configs(source, m.config)
    dtype = dtype_name(generation_dtype(m.dtype, device, configs["unet"])[0])  # as txt2img.load_model
    precision = None
    if openvino:  # as txt2img.load_model: --dtype picks OpenVINO's precision, torch loads in it
        from ldm_cli.models.backends import openvino_precision

        precision = openvino_precision(m.dtype)[0]
        dtype = "bf16" if precision == "bf16" else "fp32"
    factor = 2 ** (len(configs["vae"]["block_out_channels"]) - 1)
    native = configs["unet"]["sample_size"] * factor
    height, width = settings.height or native, settings.width or native
    init = _init_size(settings)
    if init is not None:
        width, height = init
    scheduler = settings.scheduler or name_for_class(configs["scheduler"].get("_class_name", ""))
    guidance = resolved_guidance(scheduler, settings.guidance, settings.guidance_default, configs["unet"])  # as txt2img
    gamma = resolved_tcd_gamma(scheduler, getattr(settings.recipe, "tcd_gamma", None), lambda m: print(m, file=sys.stderr))
    guided = uses_unconditional_pass(guidance) and not configs["unet"].get("time_cond_proj_dim")
    latent = [1, configs["unet"]["in_channels"], height // factor, width // factor]
    perf = settings.performance
    parameters = count_parameters(configs)
    memory = estimate_memory(configs, parameters, latent, height, width, guided, dtype, device, perf)
    if precision is not None:  # OpenVINO's compiled copy of the UNet sits beside torch's
        extra = parameters["unet"] * (2 if precision == "bf16" else 4)
        memory["parts"]["weights"] += extra
        memory["peak_bytes"] += extra
    return {
        "prompts": list(settings.prompts),
        "negative_prompt": settings.negative_prompt,
        "model": source.spec,
        "model_kind": source.kind,
        "configs": config_note,
        "device": device,
        "dtype": dtype if precision is None else f"{dtype} (torch); the UNet in OpenVINO at {precision}",
        "height": height,
        "width": width,
        "steps": settings.steps,
        "guidance": guidance,
        "unet_batch": 2 if guided else 1,
        "scheduler": scheduler,
        **({"tcd_gamma": gamma} if gamma is not None else {}),
        "seed": settings.seed if settings.seed is not None else "random",
        "images": len(settings.prompts) * settings.num_images,
        "out": str(settings.out or "outputs"),
        "fast_paths": ["sdpa", *perf.enabled()],
        "latent_shape": latent,
        **({"recipe": asdict(settings.recipe)} if settings.recipe is not None else {}),
        "memory": memory,
    }


def print_plan(settings) -> None:
    plan = describe(settings)
    if settings.json_output:
        print(json.dumps(plan), flush=True)
        return
    memory = plan.pop("memory")
    for key, value in plan.items():
        print(f"{key + ':':<17}{value}")
    parts = ", ".join(f"{k} {_gib(v)}" for k, v in memory["parts"].items())
    print(f"{'memory:':<17}~{_gib(memory['peak_bytes'])} peak on {memory['where']} ({parts})")
    print("dry run: nothing was loaded or written", file=sys.stderr)


def read_configs(source: ModelSource, single_file_config: Path | None) -> tuple[dict, str]:
    """The component configs for a source, and where they came from."""
    if source.kind in ("folder", "bundled"):
        return _read_dir(source.path), f"{source.path}"
    if source.kind == "single-file":
        folder = single_file_config or SD15_CONFIG_DIR
        return _read_dir(folder), f"{folder} (single-file checkpoint)"
    cached = _hub_cache_configs(source)
    if cached is not None:
        return cached, "local Hugging Face cache"
    return _read_dir(SD15_CONFIG_DIR), "not in the local cache; estimated with the bundled SD1.5 configs"


def _read_dir(folder: Path) -> dict:
    from ldm_cli.errors import ModelError

    configs = {}
    for name, relative in _CONFIG_FILES.items():
        try:
            configs[name] = json.loads((Path(folder) / relative).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{folder}/{relative} is missing or unreadable ({exc}); re-download the model") from None
    return configs


def _hub_cache_configs(source: ModelSource) -> dict | None:
    from huggingface_hub import try_to_load_from_cache

    configs = {}
    for name, relative in _CONFIG_FILES.items():
        path = try_to_load_from_cache(source.spec, relative, revision=source.revision)
        if not isinstance(path, str):
            return None
        configs[name] = json.loads(Path(path).read_text())
    return configs


def _init_size(settings) -> tuple[int, int] | None:
    if getattr(settings, "init_image", None) is None and getattr(settings, "init_latents", None) is None:
        return None
    from ldm_cli.pipeline.starts.start import resolve_start

    return resolve_start(settings).size  # the init's size, grown by --outpaint


def count_parameters(configs: dict) -> dict[str, int]:
    """Parameters per model, counted on the meta device (no memory, no weights)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ldm_cli.models.loading import quiet_library_logs

    quiet_library_logs()
    with torch.device("meta"):
        models = {
            "text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])),
            "vae": AutoencoderKL.from_config(configs["vae"]),
            "unet": UNet2DConditionModel.from_config(configs["unet"]),
        }
    return {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}


def estimate_memory(configs, parameters, latent, height, width, guided, dtype, device, perf) -> dict:
    """Peak memory of one generation by the model in the module docstring."""
    size = BYTES[dtype]
    where = "cuda" if device.startswith("cuda") else "cpu"
    weights = {name: count * size for name, count in parameters.items()}
    _, _, h, w = latent
    unet = K_UNET * (2 if guided else 1) * configs["unet"]["block_out_channels"][0] * h * w * size
    if perf.vae_tiling:
        tile = configs["vae"].get("sample_size", 512)
        height, width = min(height, tile), min(width, tile)
    vae = K_VAE * configs["vae"]["block_out_channels"][0] * height * width * size
    resident = max(weights.values()) if perf.offload and where == "cuda" else sum(weights.values())
    parts = {"runtime": RUNTIME_BYTES[where], "weights": resident, "activations": max(unet, vae)}
    return {"peak_bytes": sum(parts.values()), "where": where, "parts": parts, "parameters": parameters}


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"
