"""The A1111 request fields of ldm's recipe and inpainting features, as the `ldm generate` flags they
stand for (see requests.py for the table), and the settings POST /sdapi/v1/options may set."""

from __future__ import annotations

import secrets
from pathlib import Path

from ldm_cli.pipeline.config import MAX_SEED
from ldm_cli.pipeline.records.recipe import RecipeSettings


class RequestError(ValueError):
    """A request we answer with 422; the message names the A1111 field."""


INPAINTING_FILL = {0: "fill", 1: "original"}  # A1111's masked content: fill, original (2, 3: latent noise/nothing)
HR_UPSCALERS = {"latent": "latent", "lanczos": "lanczos"}  # A1111's hr_upscaler names (lower case) -> --hires-upscaler


# A1111 settings that POST /sdapi/v1/options may set for every later request (override_settings wins).
GLOBAL_OPTIONS = ("CLIP_stop_at_last_layers", "eta_noise_seed_delta", "sd_vae", "token_merging_ratio")


def check_options(new: dict, loaded_vae: str | None) -> None:
    """POST /sdapi/v1/options: the generation settings it sets are checked as a request's would be."""
    if new.get("CLIP_stop_at_last_layers") not in (None, ""):
        clip_skip = _integer(new["CLIP_stop_at_last_layers"], "CLIP_stop_at_last_layers")
        if not 1 <= clip_skip <= 12:
            raise RequestError(f"CLIP_stop_at_last_layers {clip_skip}: must be between 1 (the last layer) and 12")
    if new.get("eta_noise_seed_delta") not in (None, ""):
        if not 0 <= _integer(new["eta_noise_seed_delta"], "eta_noise_seed_delta") <= MAX_SEED:
            raise RequestError(f"eta_noise_seed_delta {new['eta_noise_seed_delta']}: must be between 0 and {MAX_SEED}")
    check_vae_name(new.get("sd_vae"), loaded_vae, "sd_vae")
    _ratio(new.get("token_merging_ratio"), "token_merging_ratio")


def with_options(request, options: dict):
    """The request with the server's stored options under its own override_settings, as A1111 applies them."""
    stored = {key: options[key] for key in GLOBAL_OPTIONS if options.get(key) not in (None, "")}
    return request.model_copy(update={"override_settings": {**stored, **request.override_settings}})


def check_vae_name(value, loaded: str | None, field: str) -> None:
    """sd_vae: Automatic/None, or the name of the VAE this server loaded (--vae)."""
    wanted = str(value or "Automatic")
    if wanted in ("Automatic", "None") or (loaded and Path(wanted).name in (loaded, Path(loaded).stem)):
        return
    have = f"the loaded one is {loaded!r}" if loaded else "the model's own VAE is loaded"
    raise RequestError(f"not supported: {field} {wanted!r} ({have}; restart `ldm serve --vae` to use another)")


def recipe_for(request, schedule_type: str | None, img2img: bool) -> RecipeSettings:
    """Clip skip, variation seed, ENSD and hires fix, as --clip-skip, --variation-seed/-strength,
    --eta-noise-seed-delta and --hires-* set them."""
    values: dict = {"schedule_type": schedule_type, "clip_skip": _clip_skip(request)}
    ensd = request.override_settings.get("eta_noise_seed_delta")
    if ensd not in (None, ""):
        values["eta_noise_seed_delta"] = _integer(ensd, "override_settings.eta_noise_seed_delta")
    if request.subseed_strength:
        subseed = request.subseed
        if subseed == -1:  # A1111: a random variation seed
            subseed = secrets.randbelow(2**32)
        values.update(variation_seed=subseed, variation_strength=float(request.subseed_strength))
    if request.enable_hr and not img2img:
        upscaler = (request.hr_upscaler or "Latent").strip()
        if upscaler.lower() not in HR_UPSCALERS:
            raise RequestError(f"not supported by ldm: hr_upscaler {upscaler!r}; choose Latent or Lanczos")
        values.update(hires_scale=float(request.hr_scale), hires_steps=request.hr_second_pass_steps,
                      hires_strength=request.denoising_strength, hires_upscaler=HR_UPSCALERS[upscaler.lower()])
    return RecipeSettings(**values)


def _clip_skip(request) -> int:
    """A1111's CLIP_stop_at_last_layers override, or a top-level clip_skip (some clients send that)."""
    for field, value in (("clip_skip", (request.model_extra or {}).get("clip_skip")),
                         ("override_settings.CLIP_stop_at_last_layers", request.override_settings.get("CLIP_stop_at_last_layers"))):
        if value not in (None, ""):
            return _integer(value, field)
    return 1


def token_merging_for(request) -> float:
    """A1111's token_merging_ratio override (ToMe), as --token-merging sets it; 0 = off."""
    return _ratio(request.override_settings.get("token_merging_ratio"), "override_settings.token_merging_ratio")


def _ratio(value, field: str) -> float:
    from ldm_cli.models.token_merging import MAX_RATIO

    if value in (None, ""):
        return 0.0
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = float("nan")
    if not 0 <= ratio <= MAX_RATIO:  # also refuses NaN
        raise RequestError(f"{field} {value!r}: must be a number between 0 (off) and {MAX_RATIO} (0.5 is typical)")
    return ratio


def _integer(value, field: str) -> int:
    try:
        number = float(value)
        if number != int(number):
            raise ValueError
        return int(number)
    except (TypeError, ValueError, OverflowError):
        raise RequestError(f"{field} {value!r}: must be a whole number") from None


def inpaint_fields(request) -> dict:
    """A1111's inpainting fields as the --mask-* flags: mask_blur, inpainting_fill (masked content),
    inpaint_full_res ("only masked" -> --inpaint-area masked) with its padding, inpainting_mask_invert."""
    masked_area = bool(request.inpaint_full_res)
    return {
        "mask_blur": request.mask_blur if request.mask_blur is not None else request.mask_blur_x,
        "masked_content": INPAINTING_FILL[request.inpainting_fill],
        "inpaint_area": "masked" if masked_area else "whole",
        "inpaint_padding": request.inpaint_full_res_padding if masked_area else None,
        "invert_mask": bool(request.inpainting_mask_invert),
    }
