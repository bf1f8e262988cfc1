"""A1111's response bodies: base64 PNGs, the request echoed as `parameters`, and `info` (a JSON string)."""

from __future__ import annotations

import base64
import io
import json

from ldm_cli import __version__
from ldm_cli.pipeline.loop.schedule_types import a1111_fields
from ldm_cli.serve.samplers import a1111_pair
from ldm_cli.serve.engine import Engine, JobResult
from ldm_cli.serve.requests import Img2ImgRequest, Txt2ImgRequest


def generation_response(request: Txt2ImgRequest, result: JobResult, engine: Engine) -> dict:
    """TextToImageResponse / ImageToImageResponse: {"images", "parameters", "info"}."""
    parameters = request.model_dump()
    if isinstance(request, Img2ImgRequest) and not request.include_init_images:
        parameters["init_images"] = None  # as A1111: the request's pictures are not sent back unless asked
        parameters["mask"] = None
    images = [base64.b64encode(image.png).decode("ascii") for image in result.images] if request.send_images else []
    return {"images": images, "parameters": parameters, "info": json.dumps(info(request, result, engine))}


def info(request: Txt2ImgRequest, result: JobResult, engine: Engine) -> dict:
    """The fields of A1111's Processed.js() that describe what was made."""
    plan, made = result.plan, result.images
    seeds = [image.seed for image in made] or result.seeds
    count = len(seeds)
    sampler, schedule = a1111_pair(plan.scheduler, plan.schedule_type)
    label = a1111_fields(plan.scheduler, plan.schedule_type)[1]
    strength = getattr(request, "denoising_strength", None) if isinstance(request, Img2ImgRequest) else None
    if plan.hires is not None:
        strength = plan.hires.strength
    variation = plan.variation_seed is not None and plan.variation_strength > 0
    subseeds = [plan.variation_seed + (seed - result.seeds[0]) for seed in seeds] if variation else seeds
    return {
        "prompt": result.prompt, "all_prompts": [result.prompt] * count,
        "negative_prompt": plan.negative_prompt, "all_negative_prompts": [plan.negative_prompt] * count,
        "seed": result.seeds[0], "all_seeds": seeds,
        "subseed": subseeds[0] if subseeds else result.seeds[0], "all_subseeds": subseeds,
        "subseed_strength": plan.variation_strength if variation else 0,
        "width": plan.width, "height": plan.height,
        "sampler_name": sampler, "scheduler": schedule, "cfg_scale": plan.guidance, "steps": plan.steps,
        "batch_size": request.batch_size, "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": engine.name, "sd_model_hash": engine.sha256[:10] or None,
        "sd_vae_name": engine.vae_name(), "sd_vae_hash": None,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1, "denoising_strength": strength,
        "extra_generation_params": {"Schedule type": label} if label else {}, "index_of_first_image": 0,
        "infotexts": [image.infotext for image in made], "styles": [],
        "job_timestamp": result.timestamp, "clip_skip": plan.clip_skip, "is_using_inpainting_conditioning": False,
        "version": f"ldm {__version__}",
        "interrupted": result.interrupted, "warnings": result.warnings,
    }


def progress_response(snapshot: dict, skip_current_image: bool) -> dict:
    """ProgressResponse: progress, eta_relative, state{...}, current_image (base64 PNG or None), textinfo."""
    preview = snapshot.pop("preview")
    snapshot["current_image"] = None if skip_current_image or preview is None else encode_png(preview)
    snapshot["textinfo"] = None
    return snapshot


def encode_png(pixels) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_info(data: bytes) -> dict:
    """PNGInfoResponse: the `parameters` text, every other text chunk, and the parsed parameters."""
    from PIL import Image

    from ldm_cli.files.metadata import A1111_KEY, parse_a1111

    with Image.open(io.BytesIO(data)) as image:
        text = {k: v for k, v in (getattr(image, "text", {}) or {}).items() if isinstance(v, str)}
    geninfo = text.pop(A1111_KEY, "")
    parameters = {}
    if geninfo:
        parsed = parse_a1111(geninfo)
        parameters = {"Prompt": parsed["prompt"], "Negative prompt": parsed["negative_prompt"], **parsed["fields"]}
        width, _, height = str(parsed["fields"].get("Size", "")).partition("x")
        if height:
            parameters["Size-1"], parameters["Size-2"] = width, height
    return {"info": geninfo, "items": text, "parameters": parameters}
