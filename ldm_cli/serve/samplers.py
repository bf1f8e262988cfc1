"""A1111 sampler and scheduler names, read with the CLI's own rules (pipeline/loop/schedule_types.py).

A1111 (1.9 and later) names a sampler ("DPM++ 2M") and, separately, a schedule type ("karras");
older clients send the two joined ("DPM++ 2M Karras"). Both forms go through `resolve_sampler`,
as `ldm generate --scheduler/--schedule-type` does. A request without a scheduler, or with
"Automatic", gets A1111's meaning: the sampler's own A1111 default (Karras for DPM++ 2M, Uniform
for Euler a), i.e. `--schedule-type automatic`; samplers without schedule types (DDIM, PLMS,
UniPC, DDPM) take none.
"""

from __future__ import annotations

from ldm_cli.errors import UsageError
from ldm_cli.pipeline.loop.schedule_types import SCHEDULE_TYPES, a1111_fields, resolve_sampler, types_for
from ldm_cli.pipeline.loop.schedulers import SCHEDULERS

# k-diffusion style aliases A1111 lists for each sampler (modules/sd_samplers_kdiffusion.py).
_ALIASES = {
    "euler-a": ["k_euler_a", "k_euler_ancestral"], "euler": ["k_euler"], "lms": ["k_lms"],
    "heun": ["k_heun"], "dpm2": ["k_dpm_2"], "dpm2-a": ["k_dpm_2_a"], "dpm++2m": ["k_dpmpp_2m"],
    "dpm++2m-sde": ["k_dpmpp_2m_sde"], "dpm++sde": ["k_dpmpp_sde"], "ddim": ["ddim"], "pndm": ["plms"],
    "unipc": ["unipc"], "ddpm": ["ddpm"],
}
AUTOMATIC = ("", "automatic")


class SamplerError(ValueError):
    """The request names a sampler or schedule ldm does not have; the message says what it has."""


def _is_combined(name: str) -> bool:
    """ldm's legacy specs that are a sampler plus a schedule type (dpm++2m-karras): not listed as samplers."""
    return a1111_fields(name, None)[0] != SCHEDULERS[name].a1111_name


def sampler_items() -> list[dict]:
    """GET /sdapi/v1/samplers: one item per A1111 sampler name (a Karras variant is a schedule type)."""
    return [{"name": spec.a1111_name, "aliases": list(dict.fromkeys([*_ALIASES.get(name, []), name])), "options": {}}
            for name, spec in SCHEDULERS.items() if not _is_combined(name)]


def a1111_scheduler_name(name: str) -> str:
    return name.replace("-", "_")  # A1111 writes sgm_uniform


def scheduler_items() -> list[dict]:
    """GET /sdapi/v1/schedulers, in A1111's shape: every schedule type ldm has."""
    return [{"name": a1111_scheduler_name(t.name), "label": t.label, "aliases": None,
             "default_rho": 7.0 if t.name == "karras" else -1, "need_inner_model": False}
            for t in SCHEDULE_TYPES.values()]


def a1111_pair(name: str, schedule_type: str | None) -> tuple[str, str | None]:
    """(sampler_name, scheduler) for `info`, e.g. ("DPM++ 2M", "karras"); scheduler None when it takes none."""
    sampler, label = a1111_fields(name, schedule_type)
    if label is None:
        return sampler, None
    kind = next(t.name for t in SCHEDULE_TYPES.values() if t.label == label)
    return sampler, a1111_scheduler_name(kind)


def resolve(sampler_name: str | None, scheduler: str | None) -> tuple[str | None, str | None]:
    """(ldm scheduler, schedule type) for an A1111 sampler + scheduler; (None, None) when neither is given
    (the model's own scheduler, as `ldm generate` without --scheduler)."""
    schedule = (scheduler or "").strip()
    automatic = schedule.lower() in AUTOMATIC
    if not sampler_name:
        if not automatic:
            raise SamplerError(f"scheduler {scheduler!r} needs a sampler_name (e.g. 'DPM++ 2M')")
        return None, None
    try:
        name, kind = resolve_sampler(_lookup(sampler_name.strip()), None if automatic else schedule)
    except UsageError as exc:
        message = str(exc).replace("--schedule-type", "scheduler").replace("--scheduler", "sampler_name")
        raise SamplerError(message.removeprefix("ldm: error: ")) from None
    if kind is None and automatic and types_for(name):
        kind = "automatic"  # A1111: no scheduler, or "Automatic", is the sampler's own default
    return name, kind


def _lookup(sampler_name: str) -> str:
    """ldm's name, an A1111 name (old combined ones too) or an alias; the text resolve_sampler reads."""
    wanted = sampler_name.lower()
    for name in SCHEDULERS:
        if wanted in (name, *_ALIASES.get(name, [])):
            return name
    try:
        resolve_sampler(sampler_name)
    except UsageError:
        choices = ", ".join(repr(item["name"]) for item in sampler_items())
        raise SamplerError(f"Sampler not found: {sampler_name!r}; choose one of {choices} (GET /sdapi/v1/samplers)") from None
    return sampler_name
