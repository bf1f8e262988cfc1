"""A1111 request bodies for /sdapi/v1/txt2img and /img2img, and their mapping onto GenerateSettings.

All the mapping lives here, onto the same GenerateSettings fields the flags of `ldm generate` set:

  sampler_name, scheduler       --scheduler, --schedule-type (none or "Automatic": the sampler's A1111 default)
  enable_hr, hr_scale, hr_upscaler ("Latent"/"Lanczos"), hr_second_pass_steps, denoising_strength (txt2img)
                                --hires-scale, --hires-upscaler, --hires-steps, --hires-strength
  subseed, subseed_strength     --variation-seed (-1: random), --variation-strength
  override_settings.CLIP_stop_at_last_layers, clip_skip     --clip-skip
  override_settings.eta_noise_seed_delta                     --eta-noise-seed-delta
  override_settings.token_merging_ratio                      --token-merging
  mask, mask_blur (or equal mask_blur_x/_y), inpainting_fill (0 fill, 1 original), inpaint_full_res
  (-> --inpaint-area masked), inpaint_full_res_padding, inpainting_mask_invert
                                --mask, --mask-blur, --masked-content, --inpaint-area, --inpaint-padding, --invert-mask
  <lora:NAME:W> and embedding names in `prompt`              --lora-dir, --embeddings-dir of `ldm serve`
  override_settings.sd_vae      accepted when Automatic/None or the name of `ldm serve --vae`

Fields are accepted with A1111's names and defaults (unknown fields are ignored, as A1111 does). A
field ldm cannot honour is listed in UNWIRED: a request that *uses* it (a value other than the
neutral default clients send) answers 422 "not supported yet: FIELD" (a feature ldm may add) or
"not supported by ldm: FIELD". Fields that only tune A1111's own samplers (eta, s_churn, s_tmin,
s_tmax, s_noise, s_min_uncond, image_cfg_scale) and bookkeeping fields (do_not_save_*,
force_task_id, comments) are ignored.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

from ldm_cli.errors import InputFileError, UsageError
from ldm_cli.pipeline.config import MAX_SEED, GenerateSettings, ModelSettings, validate_generate
from ldm_cli.serve.request_fields import (
    INPAINTING_FILL, RequestError, check_vae_name, inpaint_fields, recipe_for, token_merging_for,
)
from ldm_cli.serve.samplers import SamplerError, resolve

MAX_IMAGES_PER_REQUEST = 100
RESIZE_MODES = {0: "stretch", 1: "crop", 2: "pad"}  # A1111: just resize, crop and resize, resize and fill


class Txt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = []
    seed: int = Field(-1, ge=-1, le=MAX_SEED)
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: Optional[str] = None
    sampler_index: Optional[str] = None  # deprecated alias of sampler_name
    scheduler: Optional[str] = None
    batch_size: int = Field(1, ge=1, le=MAX_IMAGES_PER_REQUEST)
    n_iter: int = Field(1, ge=1, le=MAX_IMAGES_PER_REQUEST)
    steps: int = Field(50, ge=1, le=1000)
    cfg_scale: float = Field(7.0, ge=0, le=100, allow_inf_nan=False)
    width: Optional[int] = Field(None, ge=64, le=2048)  # None: the model's native size
    height: Optional[int] = Field(None, ge=64, le=2048)
    restore_faces: Optional[bool] = None
    tiling: Optional[bool] = None
    denoising_strength: Optional[float] = Field(None, ge=0, le=1, allow_inf_nan=False)
    override_settings: dict[str, Any] = {}
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: Optional[str] = None
    refiner_switch_at: Optional[float] = None
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    script_name: Optional[str] = None
    script_args: list = []
    alwayson_scripts: dict[str, Any] = {}
    send_images: bool = True
    save_images: bool = False
    infotext: Optional[str] = None


class Img2ImgRequest(Txt2ImgRequest):
    init_images: list[str] = []
    resize_mode: int = 0
    denoising_strength: Optional[float] = Field(0.75, ge=0, le=1, allow_inf_nan=False)
    mask: Optional[str] = None
    mask_blur: Optional[int] = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: Optional[float] = None
    latent_mask: Optional[str] = None
    include_init_images: bool = False


# (field, is it used?, what it is). "yet": another part of ldm is adding it; the rest ldm does not do.
UNWIRED: list[tuple[str, Callable[[Txt2ImgRequest], bool], str, bool]] = [
    ("hr_resize_x", lambda r: r.enable_hr and r.hr_resize_x > 0, "hires fix to a size (use hr_scale)", True),
    ("hr_resize_y", lambda r: r.enable_hr and r.hr_resize_y > 0, "hires fix to a size (use hr_scale)", True),
    ("hr_sampler_name", lambda r: r.enable_hr and r.hr_sampler_name not in (None, "", "Use same sampler"),
     "another sampler for the hires pass", True),
    ("hr_scheduler", lambda r: r.enable_hr and r.hr_scheduler not in (None, "", "Use same scheduler"),
     "another schedule type for the hires pass", True),
    ("hr_prompt", lambda r: r.enable_hr and r.hr_prompt not in ("", r.prompt), "another prompt for the hires pass", True),
    ("hr_negative_prompt", lambda r: r.enable_hr and r.hr_negative_prompt not in ("", r.negative_prompt),
     "another negative prompt for the hires pass", True),
    ("seed_resize_from_w", lambda r: r.seed_resize_from_w > 0, "variation seeds: resize seed from", False),
    ("seed_resize_from_h", lambda r: r.seed_resize_from_h > 0, "variation seeds: resize seed from", False),
    ("latent_mask", lambda r: bool(getattr(r, "latent_mask", None)), "a separate latent mask", False),
    ("inpainting_fill", lambda r: bool(getattr(r, "mask", None)) and getattr(r, "inpainting_fill", 0) not in INPAINTING_FILL,
     "masked content 'latent noise' (2) and 'latent nothing' (3); ldm has fill (0) and original (1)", False),
    ("mask_blur_x", lambda r: bool(getattr(r, "mask", None)) and getattr(r, "mask_blur", None) is None
     and getattr(r, "mask_blur_x", 4) != getattr(r, "mask_blur_y", 4),
     "different horizontal and vertical mask blur (give mask_blur)", False),
    ("restore_faces", lambda r: bool(r.restore_faces), "face restoration", False),
    ("tiling", lambda r: bool(r.tiling), "tiling", False),
    ("refiner_checkpoint", lambda r: bool(r.refiner_checkpoint), "refiner models", False),
    ("script_name", lambda r: bool(r.script_name), "A1111 scripts", False),
    ("styles", lambda r: bool(r.styles), "saved prompt styles (GET /sdapi/v1/prompt-styles lists none)", False),
    ("infotext", lambda r: bool(r.infotext), "settings from an infotext (use the fields themselves)", False),
    ("initial_noise_multiplier", lambda r: getattr(r, "initial_noise_multiplier", None) not in (None, 1, 1.0),
     "initial noise multiplier", False),
    ("init_images", lambda r: len(getattr(r, "init_images", [])) > 1, "more than one init image", False),
    ("resize_mode", lambda r: getattr(r, "resize_mode", 0) not in RESIZE_MODES, "latent upscale resize (3)", False),
]



@dataclass
class JobSpec:
    """What the worker runs: settings validated as `ldm generate` validates them, where the loop starts
    (start.py: noise, init or masked init, every file already read) and the LoRAs/embeddings it uses."""

    kind: str  # "txt2img" or "img2img"
    settings: GenerateSettings
    start: object  # start.NoiseStart | InitStart | inpaint.MaskedStart
    networks: object  # networks.NetworkPlan
    save: bool = False  # save_images: also write each PNG to settings.out, as `ldm generate` names them


@dataclass(frozen=True)
class ServerDefaults:
    """What `ldm serve` was started with that every job takes: --lora, --lora-dir, --embeddings-dir, --vae."""

    loras: tuple[str, ...] = ()
    lora_dirs: tuple[Path, ...] = ()
    embeddings_dirs: tuple[Path, ...] = ()
    vae_name: str | None = None  # the file name of --vae; None: the model's own


def check_unwired(request: Txt2ImgRequest) -> None:
    for name, used, what, coming in UNWIRED:
        if used(request):
            raise RequestError(f"not supported {'yet' if coming else 'by ldm'}: {name} ({what})")
    if request.alwayson_scripts:  # A1111's own answer for a script it does not have
        raise RequestError(f"always on script {next(iter(request.alwayson_scripts))} not found")


def build_job(request: Txt2ImgRequest, model: ModelSettings, scratch: Path, knows_model: Callable[[str], bool],
              out: Path = Path("outputs"), defaults: ServerDefaults = ServerDefaults()) -> JobSpec:
    """Validate `request` and turn it into a JobSpec; raises RequestError (422) naming the field."""
    from ldm_cli.pipeline.records.networks import plan_networks
    from ldm_cli.pipeline.starts.start import resolve_start

    check_unwired(request)
    wanted = request.override_settings.get("sd_model_checkpoint")
    if wanted and not knows_model(str(wanted)):
        raise RequestError(f"override_settings.sd_model_checkpoint {wanted!r}: this server has one model loaded "
                           "(GET /sdapi/v1/sd-models); restart `ldm serve --model` to serve another")
    _check_vae(request, defaults.vae_name)
    img2img = isinstance(request, Img2ImgRequest)
    settings = _settings(request, model, out if request.save_images else scratch, defaults)
    if img2img:
        settings = replace(settings, init_image=_write_image(request.init_images, "init_images", "init", scratch),
                           strength=request.denoising_strength, resize=RESIZE_MODES[request.resize_mode])
        if request.mask:
            settings = replace(settings, mask=_write_image([request.mask], "mask", "mask", scratch), **inpaint_fields(request))
    try:
        validate_generate(settings)
        start = resolve_start(settings)  # reads every pixel now: the files are not needed after this
        networks = plan_networks(settings)
    except (UsageError, InputFileError) as exc:
        raise RequestError(a1111_message(str(exc), scratch)) from None
    finally:
        for path in (settings.init_image, settings.mask):
            if path is not None:
                path.unlink(missing_ok=True)
    return JobSpec("img2img" if img2img else "txt2img", settings, start, networks, save=request.save_images)


def _check_vae(request: Txt2ImgRequest, loaded: str | None) -> None:
    check_vae_name(request.override_settings.get("sd_vae"), loaded, "override_settings.sd_vae")


def _settings(request: Txt2ImgRequest, model: ModelSettings, out: Path, defaults: ServerDefaults) -> GenerateSettings:
    try:
        scheduler, schedule_type = resolve(request.sampler_name or request.sampler_index, request.scheduler)
    except SamplerError as exc:
        raise RequestError(str(exc)) from None
    total = request.batch_size * request.n_iter
    if total > MAX_IMAGES_PER_REQUEST:
        raise RequestError(f"batch_size x n_iter = {total}: at most {MAX_IMAGES_PER_REQUEST} images per request")
    return GenerateSettings(
        prompts=(request.prompt,),
        negative_prompt=request.negative_prompt,
        steps=request.steps,
        guidance=float(request.cfg_scale),
        seed=None if request.seed == -1 else request.seed,
        height=request.height,
        width=request.width,
        scheduler=scheduler,
        num_images=total,
        out=out,  # the scratch folder unless save_images: validation wants a writable place either way
        model=model,
        recipe=recipe_for(request, schedule_type, isinstance(request, Img2ImgRequest)),
        token_merging=token_merging_for(request),
        loras=defaults.loras,
        lora_dirs=defaults.lora_dirs,
        embeddings_dirs=defaults.embeddings_dirs,
    )


def _write_image(images: list[str], field: str, prefix: str, scratch: Path) -> Path:
    """A base64 image (a data: URL or raw) as a file, so it is read exactly as --init-image/--mask are."""
    if not images:
        raise RequestError("init_images: give one base64 image (img2img needs a picture to start from)")
    data = decode_base64_image(images[0], f"{field}[0]" if field == "init_images" else field)
    scratch.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{prefix}-", dir=scratch)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return Path(name)


def decode_base64_image(text: str, field: str) -> bytes:
    if text.startswith(("http://", "https://")):
        raise RequestError(f"{field}: ldm serve does not fetch URLs; send the image itself as base64")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text.strip(), validate=False)
    except (binascii.Error, ValueError):
        raise RequestError(f"{field}: not valid base64") from None


# The CLI's flag names, as the A1111 fields that set them.
_FLAGS = [
    ("--init-image init_images[0]", "init_images[0]"),
    ("--dim/--height/--width (with --resize crop|pad|stretch)", "width/height (with resize_mode 0, 1 or 2)"),
    ("--num-images", "batch_size x n_iter"), ("--steps", "steps"), ("--guidance", "cfg_scale"),
    ("--height", "height"), ("--width", "width"), ("--seed", "seed"), ("--strength", "denoising_strength"),
    ("--scheduler", "sampler_name"), ("--init-image", "init_images[0]"), ("--resize", "resize_mode"),
    ("choose another --out", "restart `ldm serve` with another --out"), ("--out", "save_images to"),
    ("ldm generate", "the request"),
    ("--hires-scale", "hr_scale"), ("--hires-steps", "hr_second_pass_steps"), ("--hires-strength", "denoising_strength"),
    ("--hires-upscaler", "hr_upscaler"), ("--clip-skip", "clip_skip"), ("--variation-seed", "subseed"),
    ("--variation-strength", "subseed_strength"), ("--eta-noise-seed-delta", "override_settings.eta_noise_seed_delta"),
    ("--mask-blur", "mask_blur"), ("--inpaint-padding", "inpaint_full_res_padding"), ("--invert-mask", "inpainting_mask_invert"),
    ("--inpaint-area masked", "inpaint_full_res"), ("--masked-content", "inpainting_fill"), ("--mask", "mask"),
]


def a1111_message(message: str, scratch: Path) -> str:
    """A validation message from ldm's settings checks, naming request fields instead of flags and files."""
    message = re.sub(re.escape(str(scratch)) + r"/init-[A-Za-z0-9_]+", "init_images[0]", message)
    message = re.sub(re.escape(str(scratch)) + r"/mask-[A-Za-z0-9_]+", "mask", message)
    for flag, field in _FLAGS:
        message = message.replace(flag, field)
    return message
