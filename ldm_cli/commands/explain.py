"""`ldm explain schedule|forward`, `ldm elbo` and `ldm classify`: the model's math, as pictures and numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldm_cli.options import (
    AllowPickleOpt, ConfigOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OfflineOpt, RevisionOpt,
)

EXPLAIN_EXAMPLES = """Examples:

  ldm explain schedule --model demo --scheduler ddim --steps 20 -o schedule.png

  ldm explain forward shape.png --model demo --t 0,100,250,500,750,999
"""
ELBO_EXAMPLES = """Examples:

  ldm elbo shape.png --prompt "a red circle on a blue background" --model demo --samples 128

  ldm elbo shape.png --prompt "a red circle on a blue background" --model demo --json
"""
CLASSIFY_EXAMPLES = """Examples:

  ldm classify shape.png --model demo --label "a red circle" --label "a red square" --label "a blue circle"

  ldm classify shape.png --model demo --labels-file labels.txt --samples 64 --json
"""

OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="The picture to write (.png); never overwrites.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the noise (and timesteps) drawn, 0..2^64-1.")]
SamplesOpt = Annotated[int, typer.Option("--samples", help="Monte-Carlo samples (t, eps) per prompt, 2..100000.")]
DimOpt = Annotated[Optional[int], typer.Option("--dim", help="Crop and resize IMAGE to this square side first [default: its own size].")]
ImageArg = Annotated[Path, typer.Argument(help="The image (PNG, JPEG, ...).", show_default=False)]

explain_app = typer.Typer(help="Look at the model's math: its noise schedule and its forward process.",
                          no_args_is_help=True, epilog=EXPLAIN_EXAMPLES)


def register(app: typer.Typer) -> None:
    app.add_typer(explain_app, name="explain")
    app.command("elbo", help="Estimate the negative ELBO of an image's latents under a prompt, in bits/dim.",
                epilog=ELBO_EXAMPLES)(elbo)
    app.command("classify", help="Rank labels for an image by their ELBO: a zero-shot classifier (Li et al. 2023).",
                epilog=CLASSIFY_EXAMPLES)(classify)


def _settings(model, revision, offline, allow_pickle, config, device, dtype, **values):
    from ldm_cli.explain.runs import ExplainSettings, check_common
    from ldm_cli.models.devices import check_device_and_dtype
    from ldm_cli.pipeline.config import ModelSettings

    check_device_and_dtype(device, dtype)
    settings = ExplainSettings(model=ModelSettings(model=model, revision=revision, offline=offline, allow_pickle=allow_pickle,
                                                   config=config, device=device, dtype=dtype), **values)
    check_common(settings)
    return settings


@explain_app.command("schedule", help="Plot beta_t, abar_t and log-SNR(t), with the timesteps a sampler visits.",
                     epilog=EXPLAIN_EXAMPLES)
def schedule(
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Sampler, see `ldm schedulers` [default: the model's own].")] = None,
    steps: Annotated[int, typer.Option("--steps", "-s", help="Sampling steps to mark, 1..1000.")] = 50,
    out: OutOpt = None, json_output: JsonOpt = False, model: ModelOpt = None, revision: RevisionOpt = None,
    offline: OfflineOpt = False, allow_pickle: AllowPickleOpt = False, config: ConfigOpt = None,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "auto",
) -> int:
    from ldm_cli.errors import UsageError
    from ldm_cli.explain.runs import run_schedule
    from ldm_cli.pipeline.loop.schedulers import spec_for

    if not 1 <= steps <= 1000:
        raise UsageError(f"--steps {steps}: must be between 1 and 1000")
    if scheduler is not None:
        spec_for(scheduler)
    settings = _settings(model, revision, offline, allow_pickle, config, device, dtype, out=out, json_output=json_output)
    run_schedule(settings, scheduler, steps)
    return 0


@explain_app.command("forward", help="Noise an image with q(x_t|x_0) at several t, decode each; SNR under each.",
                     epilog=EXPLAIN_EXAMPLES)
def forward(
    image: ImageArg,
    t: Annotated[str, typer.Option("--t", help="Timesteps, comma-separated, each 0..T-1.")] = "0,100,250,500,750,900,999",
    seed: SeedOpt = 0, dim: DimOpt = None,
    out: OutOpt = None, json_output: JsonOpt = False, model: ModelOpt = None, revision: RevisionOpt = None,
    offline: OfflineOpt = False, allow_pickle: AllowPickleOpt = False, config: ConfigOpt = None,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "auto",
) -> int:
    from ldm_cli.explain.forward import parse_timesteps
    from ldm_cli.explain.loaded import check_image_arg
    from ldm_cli.explain.runs import run_forward

    timesteps = parse_timesteps(t)
    check_image_arg(image)
    settings = _settings(model, revision, offline, allow_pickle, config, device, dtype, out=out, json_output=json_output,
                         seed=seed, dim=dim)
    run_forward(settings, image, timesteps)
    return 0


def elbo(
    image: ImageArg,
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="The caption to condition on.", show_default=False)] = None,
    samples: SamplesOpt = 64, seed: SeedOpt = 0, dim: DimOpt = None,
    out: OutOpt = None, json_output: JsonOpt = False, model: ModelOpt = None, revision: RevisionOpt = None,
    offline: OfflineOpt = False, allow_pickle: AllowPickleOpt = False, config: ConfigOpt = None,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "auto",
) -> int:
    from ldm_cli.errors import UsageError
    from ldm_cli.explain.loaded import check_image_arg
    from ldm_cli.explain.runs import run_elbo

    if prompt is None:
        raise UsageError("no --prompt given; pass the caption to score, e.g. --prompt \"a red circle on a blue background\"")
    check_image_arg(image)
    settings = _settings(model, revision, offline, allow_pickle, config, device, dtype, out=out, json_output=json_output,
                         seed=seed, samples=samples, dim=dim)
    run_elbo(settings, image, prompt)
    return 0


def classify(
    image: ImageArg,
    label: Annotated[Optional[list[str]], typer.Option("--label", "-l", help="A candidate label (a prompt); repeatable.")] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="Text file, one label per line ('#' lines skipped).")] = None,
    samples: SamplesOpt = 64, seed: SeedOpt = 0, dim: DimOpt = None,
    round_size: Annotated[int, typer.Option("--round", help="Samples per round; labels are dropped between rounds.")] = 8,
    z: Annotated[float, typer.Option("--drop-z", help="Drop a label this many paired standard errors behind the best; 0 never drops.")] = 3.0,
    weighting: Annotated[str, typer.Option("--weighting", help="elbo (the bound's w_t, bits/dim) or uniform (plain mean error, Li et al.'s choice).")] = "elbo",
    out: OutOpt = None, json_output: JsonOpt = False, model: ModelOpt = None, revision: RevisionOpt = None,
    offline: OfflineOpt = False, allow_pickle: AllowPickleOpt = False, config: ConfigOpt = None,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "auto",
) -> int:
    from ldm_cli.errors import UsageError
    from ldm_cli.explain.classify import WEIGHTINGS, ClassifyPlan
    from ldm_cli.explain.loaded import check_image_arg
    from ldm_cli.explain.runs import check_labels, run_classify

    labels = check_labels(label or [], labels_file)
    if weighting not in WEIGHTINGS:
        raise UsageError(f"--weighting {weighting!r}: choose elbo or uniform")
    settings = _settings(model, revision, offline, allow_pickle, config, device, dtype, out=out, json_output=json_output,
                         seed=seed, samples=samples, dim=dim)
    if not 1 <= round_size <= samples:
        raise UsageError(f"--round {round_size}: must be between 1 and --samples ({samples})")
    if not z >= 0 or z == float("inf"):
        raise UsageError(f"--drop-z {z}: must be a finite number >= 0 (3 is typical; 0 never drops a label)")
    check_image_arg(image)
    plan = ClassifyPlan(samples=samples, round_size=round_size, min_rounds=2,
                        z=z if z > 0 else float("inf"), weighting=weighting, seed=seed)
    run_classify(settings, image, labels, plan)
    return 0
