"""The A1111 recipe settings of `ldm generate` beyond steps/CFG/seed/size/sampler: prompt syntax,
clip skip, schedule type, variation seed, ENSD, padded conds, hires fix and TCD's gamma; their
checks, their place in the SamplingPlan and the infotext fields A1111 (or ldm, for TCD) writes."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ldm_cli.errors import UsageError

RNG_SOURCES = ("cpu",)  # A1111's "GPU"/"NV" (CUDA Philox) is not reproduced: it could not be checked bit-exact


@dataclass(frozen=True)
class RecipeSettings:
    prompt_syntax: str = "a1111"  # "plain": brackets, weights and BREAK are literal text
    clip_skip: int = 1
    schedule_type: str | None = None  # None: the sampler's plain schedule
    variation_seed: int | None = None
    variation_strength: float = 0.0
    eta_noise_seed_delta: int = 0
    pad_conds: bool = False
    hires_scale: float | None = None  # None: no hires pass
    hires_steps: int = 0
    hires_strength: float | None = None  # None: 0.7
    hires_upscaler: str = "latent"
    rng: str = "cpu"
    tcd_gamma: float | None = None  # None: the tcd sampler's default (schedulers.TCD_DEFAULT_GAMMA)


def validate_recipe(r: RecipeSettings, s) -> None:
    """Checks that need no model (s: the GenerateSettings holding r)."""
    from ldm_cli.pipeline.prompts.conditioning import SYNTAXES
    from ldm_cli.pipeline.config import MAX_SEED
    from ldm_cli.pipeline.prompts.prompt_weights import parse_prompt_attention

    if r.prompt_syntax not in SYNTAXES:
        raise UsageError(f"--prompt-syntax {r.prompt_syntax!r}: choose a1111 (weights, BREAK) or plain (literal text)")
    if r.prompt_syntax == "a1111":
        for prompt in (*s.prompts, s.negative_prompt):
            parse_prompt_attention(prompt)  # raises on a weight that is not a number
    if not 1 <= r.clip_skip <= 12:
        raise UsageError(f"--clip-skip {r.clip_skip}: must be between 1 (the last layer, the default) and 12; 2 is common for anime models")
    if r.schedule_type is not None:
        if s.scheduler is None:
            raise UsageError(f"--schedule-type {r.schedule_type}: also pass --scheduler (e.g. --scheduler \"DPM++ 2M\")")
        from ldm_cli.pipeline.loop.schedule_types import resolve_sampler

        resolve_sampler(s.scheduler, r.schedule_type)
    if r.variation_seed is not None and not 0 <= r.variation_seed <= MAX_SEED:
        raise UsageError(f"--variation-seed {r.variation_seed}: must be between 0 and {MAX_SEED}")
    if not (0 <= r.variation_strength <= 1):
        raise UsageError(f"--variation-strength {r.variation_strength}: must be between 0 (the seed's picture) and 1 (the variation seed's)")
    if r.variation_strength and r.variation_seed is None:
        raise UsageError("--variation-strength needs --variation-seed S")
    if not 0 <= r.eta_noise_seed_delta <= MAX_SEED:
        raise UsageError(f"--eta-noise-seed-delta {r.eta_noise_seed_delta}: must be between 0 and {MAX_SEED} (A1111 users often set 31337)")
    if r.tcd_gamma is not None and not 0 <= r.tcd_gamma <= 1:  # also false for NaN
        raise UsageError(f"--tcd-gamma {r.tcd_gamma}: must be between 0 (deterministic) and 1 (fresh noise each step); 0.3 is typical")
    if r.rng not in RNG_SOURCES:
        raise UsageError(f"--rng {r.rng}: only cpu is supported (A1111's GPU/NV noise is not reproduced by ldm)")
    if r.hires_scale is None:
        for flag, value, default in (("--hires-steps", r.hires_steps, 0), ("--hires-strength", r.hires_strength, None)):
            if value != default:
                raise UsageError(f"{flag} {value}: only used with --hires-scale F")
        return
    from ldm_cli.pipeline.starts.hires import DEFAULT_STRENGTH, check_hires

    if s.init_image is not None or s.init_latents is not None:
        raise UsageError("--hires-scale: the hires fix is for text-to-image; drop --init-image/--init-latents or --hires-scale")
    strength = DEFAULT_STRENGTH if r.hires_strength is None else r.hires_strength
    if not math.isfinite(r.hires_scale):
        raise UsageError(f"--hires-scale {r.hires_scale}: must be a number between 1 and 8")
    check_hires(r.hires_scale, r.hires_steps, strength, r.hires_upscaler, s.width, s.height)


def plan_fields(r: RecipeSettings | None) -> dict:
    """SamplingPlan keyword arguments for the recipe (the scheduler name is resolved elsewhere)."""
    if r is None:
        return {}
    hires = None
    if r.hires_scale is not None:
        from ldm_cli.pipeline.starts.hires import DEFAULT_STRENGTH, HiresPlan

        strength = DEFAULT_STRENGTH if r.hires_strength is None else r.hires_strength
        hires = HiresPlan(r.hires_scale, r.hires_steps, strength, r.hires_upscaler)
    return {
        "clip_skip": r.clip_skip, "prompt_syntax": r.prompt_syntax, "schedule_type": r.schedule_type,
        "variation_seed": r.variation_seed, "variation_strength": r.variation_strength,
        "eta_noise_seed_delta": r.eta_noise_seed_delta, "pad_conds": r.pad_conds, "hires": hires,
        "tcd_gamma": r.tcd_gamma,
    }


def plan_for_image(plan, index: int):
    """Image i of a run: A1111 steps the variation seed along with the seed."""
    if plan.variation_seed is None or not index:
        return plan
    return replace(plan, variation_seed=plan.variation_seed + index)


def check_clip_skip(clip_skip: int, text_encoder) -> None:
    layers = text_encoder.config.num_hidden_layers
    if clip_skip > layers:
        raise UsageError(f"--clip-skip {clip_skip}: this model's text encoder has only {layers} layers; use 1..{layers}")


def check_hires_size(plan) -> None:
    """The hires size against the limit, once the model's native size is known."""
    from ldm_cli.pipeline.config import MAX_SIZE

    width, height = output_size(plan)
    if plan.hires is not None and max(width, height) > MAX_SIZE:
        raise UsageError(f"--hires-scale {plan.hires.scale}: {plan.width}x{plan.height} would become {width}x{height}, "
                         f"over {MAX_SIZE} pixels a side; use a smaller scale or --dim")


def output_size(plan) -> tuple[int, int]:
    """(width, height) of the written picture: the hires size when there is a hires pass."""
    if plan.hires is None:
        return plan.width, plan.height
    from ldm_cli.pipeline.starts.hires import upscaled_size

    return upscaled_size(plan.width, plan.height, plan.hires.scale)


def infotext_fields(s: dict, prompt: str, negative_prompt: str) -> dict:
    """The A1111 infotext fields for a record's settings `s` (absent keys: defaults), in A1111's order."""
    from ldm_cli.pipeline.starts.hires import UPSCALERS
    from ldm_cli.pipeline.loop.schedule_types import a1111_fields

    _, schedule_label = a1111_fields(s["scheduler"], s.get("schedule_type"))
    fields = {"Schedule type": schedule_label}
    if s.get("variation_seed") is not None and s.get("variation_strength"):
        fields["Variation seed"] = s["variation_seed"]
        fields["Variation seed strength"] = s["variation_strength"]
    if (s.get("clip_skip") or 1) > 1:
        fields["Clip skip"] = s["clip_skip"]
    hires = s.get("hires")
    if hires:
        fields["Denoising strength"] = hires["strength"]
        fields["Hires upscale"] = hires["scale"]
        if hires["steps"]:
            fields["Hires steps"] = hires["steps"]
        fields["Hires upscaler"] = UPSCALERS[hires["upscaler"]]
    if s.get("tcd_gamma") is not None:
        fields["TCD gamma"] = s["tcd_gamma"]
    if s.get("eta_noise_seed_delta"):
        fields["ENSD"] = s["eta_noise_seed_delta"]
    if s.get("token_merging"):
        fields["Token merging ratio"] = s["token_merging"]
        if hires:  # A1111 names the hires pass's ratio apart; ldm merges both passes at one
            fields["Token merging ratio hr"] = s["token_merging"]
    if s.get("pad_conds"):
        fields["Pad conds"] = "True"
    if s.get("prompt_syntax") == "plain" and any(c in prompt + negative_prompt for c in "(["):
        fields["Emphasis"] = "None"
    fields["RNG"] = "CPU"
    return fields
