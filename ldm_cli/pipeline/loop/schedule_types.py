"""A1111's "Schedule type" (Karras, Exponential, SGM Uniform, ...) on top of the scheduler registry.

`--scheduler` takes our short names or A1111's sampler names, including the old combined ones
("DPM++ 2M Karras"); `--schedule-type` picks the sigma schedule. Both are recorded as A1111 records
them: "Sampler: DPM++ 2M, Schedule type: Karras".
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from ldm_cli.errors import UsageError
from ldm_cli.pipeline.loop.schedulers import A1111_AUTOMATIC, SCHEDULERS, spec_for


@dataclass(frozen=True)
class ScheduleType:
    name: str
    label: str  # as A1111 writes it in "Schedule type: ..."
    overrides: dict
    needs: str | None  # the diffusers __init__ argument it needs (None: every sampler with types)


SCHEDULE_TYPES = {
    t.name: t
    for t in [
        ScheduleType("automatic", "Automatic", {}, None),  # the sampler's A1111 default (A1111_AUTOMATIC)
        ScheduleType("uniform", "Uniform", {}, None),  # the model's own timestep spacing
        ScheduleType("karras", "Karras", {"use_karras_sigmas": True}, "use_karras_sigmas"),
        ScheduleType("exponential", "Exponential", {"use_exponential_sigmas": True}, "use_exponential_sigmas"),
        ScheduleType("sgm-uniform", "SGM Uniform", {"timestep_spacing": "trailing"}, "timestep_spacing"),
        ScheduleType("beta", "Beta", {"use_beta_sigmas": True}, "use_beta_sigmas"),
    ]
}


def _key(text: str) -> str:
    return text.strip().lower().replace("_", "-").replace(" ", "-")


def schedule_type_for(text: str) -> ScheduleType:
    key = _key(text)
    for t in SCHEDULE_TYPES.values():
        if key in (t.name, _key(t.label)):
            return t
    raise UsageError(f"--schedule-type {text!r} is not known; choose one of {', '.join(SCHEDULE_TYPES)}")


def types_for(name: str) -> list[str]:
    """The schedule types a sampler takes (empty for DDIM, PLMS, UniPC, DDPM, as in A1111)."""
    if name not in A1111_AUTOMATIC:
        return []
    import diffusers

    params = inspect.signature(getattr(diffusers, spec_for(name).class_name).__init__).parameters
    return [t.name for t in SCHEDULE_TYPES.values() if t.needs is None or t.needs in params]


def effective(name: str, schedule_type: str | None) -> str | None:
    """'automatic' resolved to the sampler's own default; None stays None (the plain schedule)."""
    if schedule_type == "automatic":
        return A1111_AUTOMATIC.get(name, "uniform")
    return schedule_type


def schedule_overrides(name: str, schedule_type: str | None) -> dict:
    kind = effective(name, schedule_type)
    return dict(SCHEDULE_TYPES[kind].overrides) if kind else {}


def _by_a1111_name() -> dict[str, str]:
    table = {}  # a plain spec wins over a configured one of the same A1111 name
    for name, spec in sorted(SCHEDULERS.items(), key=lambda item: bool(item[1].overrides)):
        table.setdefault(spec.a1111_name.lower(), name)
    return table


def resolve_sampler(text: str, schedule_type: str | None = None) -> tuple[str, str | None]:
    """--scheduler / --schedule-type (or A1111's Sampler / Schedule type) -> (our name, type name)."""
    wanted = schedule_type_for(schedule_type).name if schedule_type else None
    if text in SCHEDULERS:
        name, implied = text, None
    else:
        name, implied = _from_a1111_name(text)
    if wanted and implied and wanted != implied:
        raise UsageError(f"--scheduler {text!r} already names the {implied} schedule; drop --schedule-type {schedule_type}")
    kind = wanted or implied
    if kind and kind not in types_for(name):
        allowed = ", ".join(types_for(name)) or "none (it has no schedule types)"
        raise UsageError(f"--schedule-type {kind} does not apply to --scheduler {name}; it takes: {allowed}")
    return name, kind


def _from_a1111_name(text: str) -> tuple[str, str | None]:
    table = _by_a1111_name()
    lowered = " ".join(text.split()).lower()
    for t in SCHEDULE_TYPES.values():  # old combined names: "DPM++ 2M Karras", "Euler a SGM Uniform"
        suffix = " " + t.label.lower()
        if t.name != "automatic" and lowered.endswith(suffix) and lowered[: -len(suffix)] in table:
            return table[lowered[: -len(suffix)]], t.name
    if lowered in table:
        return table[lowered], None
    raise UsageError(f"--scheduler {text!r} is not known; choose one of {', '.join(SCHEDULERS)} or an A1111 name (see `ldm schedulers`)")


def a1111_fields(name: str, schedule_type: str | None) -> tuple[str, str | None]:
    """(Sampler, Schedule type) as A1111 1.9+ writes them."""
    spec = spec_for(name)
    sampler = spec.a1111_name
    for t in SCHEDULE_TYPES.values():  # our legacy combined specs, e.g. dpm++2m-karras
        if spec.overrides and sampler.endswith(" " + t.label) and t.overrides.items() <= spec.overrides.items():
            return sampler[: -len(t.label) - 1], t.label
    if name not in A1111_AUTOMATIC:
        return sampler, None
    return sampler, SCHEDULE_TYPES[schedule_type or "uniform"].label
