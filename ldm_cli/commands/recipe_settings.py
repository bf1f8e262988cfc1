"""The recipe flags of `ldm generate` (prompt syntax, clip skip, schedule type, variation seed, ENSD,
hires fix, TCD gamma): from the command line, from an ldm record, and from an A1111 infotext.

Every A1111 field that changes the picture and that ldm cannot honour is named in one warning line.
"""

from __future__ import annotations

import sys

from ldm_cli.errors import UsageError
from ldm_cli.pipeline.records.recipe import RecipeSettings

RECIPE_FLAGS = {
    "prompt_syntax", "clip_skip", "schedule_type", "variation_seed", "variation_strength", "eta_noise_seed_delta",
    "pad_conds", "hires_scale", "hires_steps", "hires_strength", "hires_upscaler", "rng", "tcd_gamma",
}
# Fields that describe the picture's making without changing it (or that other settings carry).
INFORMATIONAL = {
    "Steps", "CFG scale", "Seed", "Size", "Model hash", "Model", "Version", "VAE hash", "VAE", "Lora hashes",
    "TI hashes", "Hashes", "Schedule type", "Sampler", "Denoising strength", "Hires upscale", "Hires steps",
    "Hires upscaler", "Clip skip", "Variation seed", "Variation seed strength", "ENSD", "Eta noise seed delta",
    "RNG", "Pad conds", "Emphasis", "Token merging ratio", "Token merging ratio hr", "TCD gamma",
}
UPSCALERS_BY_A1111 = {"latent": "latent", "lanczos": "lanczos"}


def recipe_settings(values: dict) -> RecipeSettings:
    """RecipeSettings from the merged values (flag > --from > default)."""
    given = {key: values[key] for key in RECIPE_FLAGS if values.get(key) is not None}
    return RecipeSettings(**given)


def from_record_recipe(s: dict) -> dict:
    """The recipe an ldm record's settings hold (absent in records from before these flags)."""
    values = {key: s[key] for key in ("prompt_syntax", "clip_skip", "schedule_type", "variation_seed",
                                      "variation_strength", "eta_noise_seed_delta", "pad_conds", "tcd_gamma")
              if s.get(key) is not None}
    hires = s.get("hires")
    if hires:
        values.update(hires_scale=hires["scale"], hires_steps=hires["steps"], hires_strength=hires["strength"],
                      hires_upscaler=hires["upscaler"])
    return values


def from_a1111_recipe(fields: dict) -> dict:
    """Sampler and the recipe fields of an A1111 infotext; prints one warning for what is left out."""
    values: dict = {}
    unhonoured: list[str] = []
    _sampler(fields, values, unhonoured)
    if "Clip skip" in fields:
        values["clip_skip"] = int(fields["Clip skip"])
    if "Variation seed" in fields and float(fields.get("Variation seed strength", 0)) > 0:
        values["variation_seed"] = int(fields["Variation seed"])
        values["variation_strength"] = float(fields["Variation seed strength"])
    ensd = fields.get("ENSD", fields.get("Eta noise seed delta"))
    if ensd not in (None, "", "0"):
        values["eta_noise_seed_delta"] = int(ensd)
    if "TCD gamma" in fields:
        values["tcd_gamma"] = float(fields["TCD gamma"])
    if fields.get("RNG", "CPU") != "CPU":
        unhonoured.append(f"RNG: {fields['RNG']} (ldm draws noise on the CPU, A1111's 'RNG: CPU')")
    _token_merging(fields, values, unhonoured)
    if fields.get("Pad conds") == "True":
        values["pad_conds"] = True
    emphasis = fields.get("Emphasis", "Original")
    if emphasis == "None":
        values["prompt_syntax"] = "plain"
    elif emphasis != "Original":
        unhonoured.append(f"Emphasis: {emphasis}")
    _hires(fields, values, unhonoured)
    unhonoured += [f"{key}: {value}" for key, value in fields.items() if key not in INFORMATIONAL]
    if unhonoured:
        print(f"warning: --from: ldm cannot honour these recorded fields, so the picture may differ: {'; '.join(unhonoured)}",
              file=sys.stderr, flush=True)
    return values


def _token_merging(fields: dict, values: dict, unhonoured: list[str]) -> None:
    """A1111's "Token merging ratio" (and its hires pass's, which ldm can only honour when equal)."""
    ratio = float(fields.get("Token merging ratio") or 0)
    if ratio:
        values["token_merging"] = ratio
    hires_ratio = fields.get("Token merging ratio hr")
    if hires_ratio is not None and "Hires upscale" in fields and float(hires_ratio) != ratio:
        unhonoured.append(f"Token merging ratio hr: {hires_ratio} (ldm merges both passes at {ratio:g})")


def _sampler(fields: dict, values: dict, unhonoured: list[str]) -> None:
    from ldm_cli.pipeline.loop.schedule_types import resolve_sampler, types_for

    if "Sampler" not in fields:
        return
    try:
        name, kind = resolve_sampler(fields["Sampler"])
    except UsageError:
        values["unknown_sampler"] = fields["Sampler"]  # refused unless --scheduler says what to use
        return
    values["scheduler"] = name
    recorded = fields.get("Schedule type")
    if recorded and not kind:
        try:
            _, kind = resolve_sampler(name, recorded)
        except UsageError:
            if types_for(name) or recorded != "Automatic":  # DDIM's "Automatic" means nothing: no schedule types
                unhonoured.append(f"Schedule type: {recorded}")
    if kind and kind != "uniform":
        values["schedule_type"] = kind


def _hires(fields: dict, values: dict, unhonoured: list[str]) -> None:
    if "Hires upscale" not in fields:
        if "Denoising strength" in fields:
            unhonoured.append(f"Denoising strength: {fields['Denoising strength']} (img2img: pass --init-image and --strength)")
        if "Hires resize" in fields:
            unhonoured.append(f"Hires resize: {fields['Hires resize']} (use --hires-scale)")
        return
    values["hires_scale"] = float(fields["Hires upscale"])
    values["hires_steps"] = int(fields.get("Hires steps", 0))
    if "Denoising strength" in fields:
        values["hires_strength"] = float(fields["Denoising strength"])
    upscaler = fields.get("Hires upscaler", "Latent")
    values["hires_upscaler"] = UPSCALERS_BY_A1111.get(upscaler.lower(), "latent")
    if upscaler.lower() not in UPSCALERS_BY_A1111:
        unhonoured.append(f"Hires upscaler: {upscaler} (used Latent)")
