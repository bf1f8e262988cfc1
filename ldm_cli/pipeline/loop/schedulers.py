"""Scheduler registry: our short names -> diffusers scheduler classes, built from the model's config.

Each run gets a fresh scheduler because schedulers carry per-run step state.
The A1111 names are what the `parameters` PNG chunk records ("Sampler: Euler a").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ldm_cli.errors import ModelError, UsageError

NEVER = 10**9
SUITED_NEAR_ZERO_SNR = "ddim, euler, euler-a or dpm++2m"  # right from 20 steps on the demo model


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    class_name: str
    a1111_name: str
    description: str
    overrides: dict = field(default_factory=dict)
    stochastic: bool = False  # its step() draws fresh noise, so it must get the run's generator
    # Steps it needs on a model whose schedule ends at near-zero SNR, measured on the demo model
    # (benchmarks/demo_samplers.py): below it, washed-out colours. NEVER: poor at 20 and at 50 steps.
    steps_near_zero_snr: int = 0
    # A consistency sampler (LCM, TCD): few steps, and its own guidance when --g is not given
    # (guidance.consistency_default_guidance).
    consistency: bool = False


_SPECS = [
    SchedulerSpec("ddpm", "DDPMScheduler", "DDPM", "ancestral DDPM (Ho et al. 2020); needs many steps", stochastic=True),
    SchedulerSpec("ddim", "DDIMScheduler", "DDIM", "deterministic DDIM (Song et al. 2021)"),
    SchedulerSpec("pndm", "PNDMScheduler", "PLMS", "pseudo linear multistep; SD1's own default", steps_near_zero_snr=NEVER),
    SchedulerSpec("lms", "LMSDiscreteScheduler", "LMS", "linear multistep on k-diffusion sigmas", steps_near_zero_snr=NEVER),
    SchedulerSpec("euler", "EulerDiscreteScheduler", "Euler", "Euler on k-diffusion sigmas (Karras et al. 2022)"),
    SchedulerSpec("euler-a", "EulerAncestralDiscreteScheduler", "Euler a", "ancestral Euler; adds fresh noise each step", stochastic=True),
    SchedulerSpec("heun", "HeunDiscreteScheduler", "Heun", "2nd-order Heun; two UNet calls per step", steps_near_zero_snr=50),
    SchedulerSpec("dpm2", "KDPM2DiscreteScheduler", "DPM2", "DPM-Solver-2 on k-diffusion sigmas"),
    SchedulerSpec(
        "dpm2-a", "KDPM2AncestralDiscreteScheduler", "DPM2 a", "ancestral DPM2", stochastic=True,
        steps_near_zero_snr=50,
    ),
    SchedulerSpec("dpm++2m", "DPMSolverMultistepScheduler", "DPM++ 2M", "DPM-Solver++ 2M (Lu et al. 2022); good at 20-30 steps"),
    SchedulerSpec(
        "dpm++2m-karras", "DPMSolverMultistepScheduler", "DPM++ 2M Karras", "DPM++ 2M with Karras sigmas",
        {"use_karras_sigmas": True},
    ),
    SchedulerSpec(
        "dpm++2m-sde", "DPMSolverMultistepScheduler", "DPM++ 2M SDE", "stochastic DPM++ 2M",
        {"algorithm_type": "sde-dpmsolver++"}, stochastic=True,
    ),
    SchedulerSpec("dpm++sde", "DPMSolverSinglestepScheduler", "DPM++ SDE", "single-step DPM-Solver++"),
    SchedulerSpec("unipc", "UniPCMultistepScheduler", "UniPC", "UniPC predictor-corrector (Zhao et al. 2023)"),
    SchedulerSpec(
        "lcm", "LCMScheduler", "LCM", "latent consistency (Luo et al. 2023): 2-8 steps, for LCM-distilled models",
        stochastic=True, consistency=True,
    ),
    SchedulerSpec(
        "tcd", "TCDScheduler", "TCD", "trajectory consistency (Zheng et al. 2024): 2-8 steps, for TCD-LoRAs; --tcd-gamma",
        stochastic=True, consistency=True,
    ),
]

TCD_DEFAULT_GAMMA = 0.3  # TCD's stochasticity (the `eta` of TCDScheduler.step); diffusers' TCD examples use 0.3

SCHEDULERS: dict[str, SchedulerSpec] = {spec.name: spec for spec in _SPECS}

# A1111's k-diffusion samplers take a "Schedule type"; "Automatic" is each one's own default there
# (A1111 1.9+ sd_samplers_kdiffusion.py). One line per sampler.
A1111_AUTOMATIC = {
    "euler-a": "uniform",
    "euler": "uniform",
    "lms": "uniform",
    "heun": "uniform",
    "dpm2": "karras",
    "dpm2-a": "karras",
    "dpm++2m": "karras",
    "dpm++sde": "karras",
    "dpm++2m-sde": "exponential",
}


def spec_for(name: str) -> SchedulerSpec:
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise UsageError(
            f"--scheduler {name!r} is not known; choose one of {', '.join(SCHEDULERS)} (see `ldm schedulers`)"
        ) from None


def name_for_class(class_name: str) -> str:
    """The short name of a model's own scheduler class (first match), used as the default.

    A class we have no sampler for is an error, not a silent PLMS: a model made for its own sampler
    (a consistency model, say) draws noise with any other.
    """
    for spec in _SPECS:
        if spec.class_name == class_name and not spec.overrides:
            return spec.name
    raise ModelError(
        f"the model's scheduler config names {class_name or 'no class'!r}, which ldm has no sampler for; "
        f"pass --scheduler NAME ({', '.join(SCHEDULERS)})"
    )


def resolved_tcd_gamma(name: str, gamma: float | None, warn) -> float | None:
    """TCD's gamma for a run: --tcd-gamma, else the default; None for every other sampler (which takes
    none: a --tcd-gamma given for one is named in a warning and not recorded)."""
    if name == "tcd":
        return TCD_DEFAULT_GAMMA if gamma is None else gamma
    if gamma is not None:
        warn(f"warning: --tcd-gamma {gamma:g} ignored: --scheduler {name} takes no gamma (only tcd does)")
    return None


def build_scheduler(name: str, model_scheduler_config: dict, schedule_type: str | None = None):
    """A fresh scheduler of the named kind, configured from the model's own scheduler config."""
    import diffusers

    from ldm_cli.pipeline.loop.schedule_types import schedule_overrides

    spec = spec_for(name)
    cls = getattr(diffusers, spec.class_name)
    return cls.from_config(dict(model_scheduler_config), **spec.overrides, **schedule_overrides(name, schedule_type))


def terminal_signal(model_scheduler_config: dict) -> float:
    """sqrt(abar_T): how much of the image the model's noisiest training latents still hold (SD1: 0.068)."""
    from diffusers import DDPMScheduler

    return float(DDPMScheduler.from_config(dict(model_scheduler_config)).alphas_cumprod[-1].sqrt())


def sampler_warning(name: str, steps: int, model_scheduler_config: dict) -> str | None:
    """A one-line warning when the chosen sampler is known to do poorly with the model's schedule."""
    needed = spec_for(name).steps_near_zero_snr
    if steps >= needed:
        return None
    signal = terminal_signal(model_scheduler_config)
    if signal >= 0.02:  # SD1 and most models: 0.068
        return None
    fix = f"use {SUITED_NEAR_ZERO_SNR}" if needed == NEVER else f"use {needed}+ steps, or {SUITED_NEAR_ZERO_SNR}"
    return (
        f"warning: --scheduler {name} draws washed-out pictures with this model (its noise schedule ends at "
        f"near-zero SNR, sqrt(abar_T) = {signal:.3f}); {fix}"
    )
