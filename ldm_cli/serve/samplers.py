"""A1111 sampler and scheduler names, mapped onto ldm's schedulers.

A1111 (1.9 and later) names a sampler ("DPM++ 2M") and, separately, a noise schedule ("karras");
older clients send the two joined ("DPM++ 2M Karras"). Both forms are read here. "automatic"
means ldm's own spacing for that sampler, which is what `ldm generate --scheduler` uses and what
ldm's PNGs record, so a picture's `Sampler:` line maps back to the same sampler.
"""

from __future__ import annotations

from ldm_cli.pipeline.schedulers import SCHEDULERS

# k-diffusion style aliases A1111 lists for each sampler (modules/sd_samplers_kdiffusion.py).
_ALIASES = {
    "euler-a": ["k_euler_a", "k_euler_ancestral"], "euler": ["k_euler"], "lms": ["k_lms"],
    "heun": ["k_heun"], "dpm2": ["k_dpm_2"], "dpm2-a": ["k_dpm_2_a"], "dpm++2m": ["k_dpmpp_2m"],
    "dpm++2m-sde": ["k_dpmpp_2m_sde"], "dpm++sde": ["k_dpmpp_sde"], "ddim": ["ddim"], "pndm": ["plms"],
    "unipc": ["unipc"], "ddpm": ["ddpm"],
}
# Schedules ldm can honour, and the samplers each one changes: {schedule: {sampler: ldm name}}.
_SCHEDULES = {"karras": {"dpm++2m": "dpm++2m-karras"}}
AUTOMATIC = ("", "automatic")


class SamplerError(ValueError):
    """The request names a sampler or schedule ldm does not have; the message says what it has."""


def sampler_items() -> list[dict]:
    """GET /sdapi/v1/samplers: one item per A1111 sampler name (the Karras variant is a schedule)."""
    items = []
    for name, spec in SCHEDULERS.items():
        if name in {v for schedule in _SCHEDULES.values() for v in schedule.values()}:
            continue
        items.append({"name": spec.a1111_name, "aliases": list(dict.fromkeys([*_ALIASES.get(name, []), name])), "options": {}})
    return items


def scheduler_items() -> list[dict]:
    """GET /sdapi/v1/schedulers, in A1111's shape."""
    items = [{"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1, "need_inner_model": False}]
    for name in _SCHEDULES:
        items.append({"name": name, "label": name.capitalize(), "aliases": None, "default_rho": 7.0, "need_inner_model": False})
    return items


def a1111_pair(name: str) -> tuple[str, str]:
    """An ldm scheduler as A1111 1.9+ names it: (sampler, schedule), e.g. dpm++2m-karras -> ("DPM++ 2M", "karras")."""
    for schedule, variants in _SCHEDULES.items():
        for base, variant in variants.items():
            if variant == name:
                return SCHEDULERS[base].a1111_name, schedule
    return SCHEDULERS[name].a1111_name, "automatic"


def resolve(sampler_name: str | None, scheduler: str | None) -> str | None:
    """The ldm scheduler name for an A1111 sampler + schedule; None when neither is given (the model's own)."""
    schedule = (scheduler or "").strip().lower()
    if schedule not in AUTOMATIC and schedule not in _SCHEDULES:
        raise SamplerError(f"scheduler {scheduler!r} is not supported; choose one of {', '.join(['automatic', *_SCHEDULES])}")
    if not sampler_name:
        if schedule not in AUTOMATIC:
            raise SamplerError(f"scheduler {scheduler!r} needs a sampler_name (e.g. 'DPM++ 2M')")
        return None
    name = _lookup(sampler_name.strip())
    if schedule in AUTOMATIC:
        return name
    variant = _SCHEDULES[schedule].get(name)
    if variant is None and name in _SCHEDULES[schedule].values():
        return name  # "DPM++ 2M Karras" with scheduler "karras": already that
    if variant is None:
        takes = ", ".join(SCHEDULERS[n].a1111_name for n in _SCHEDULES[schedule])
        raise SamplerError(f"scheduler {scheduler!r} works only with {takes} here; use scheduler 'automatic' with {sampler_name!r}")
    return variant


def _lookup(sampler_name: str) -> str:
    wanted = sampler_name.lower()
    for name, spec in SCHEDULERS.items():
        if wanted in (spec.a1111_name.lower(), name, *_ALIASES.get(name, [])):
            return name
    choices = ", ".join(repr(item["name"]) for item in sampler_items())
    raise SamplerError(f"Sampler not found: {sampler_name!r}; choose one of {choices} (GET /sdapi/v1/samplers)")
