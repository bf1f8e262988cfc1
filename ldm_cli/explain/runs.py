"""The explain commands end to end: validated settings -> model -> numbers -> picture and report.

Validation (`check_*`) runs before any model loads; the `run_*` functions load, compute, draw, print.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import UsageError
from ldm_cli.explain.loaded import encode_pixels, load_model, read_pixels, say
from ldm_cli.pipeline.config import MAX_SEED, ModelSettings

MAX_SAMPLES = 100_000


@dataclass(frozen=True)
class ExplainSettings:
    model: ModelSettings = field(default_factory=ModelSettings)
    out: Path | None = None  # the picture; None -> a name in the current folder
    json_output: bool = False
    seed: int = 0
    samples: int = 64
    dim: int | None = None  # resize IMAGE to a square of this side (crop) first


def check_common(s: ExplainSettings) -> None:
    if s.out is not None:
        if s.out.suffix.lower() != ".png":
            raise UsageError(f"-o {s.out}: the picture is a PNG; give a name ending in .png")
        folder = s.out.parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            raise UsageError(f"-o {s.out}: {folder} is a file, not a folder; choose another -o")
    if not 0 <= s.seed <= MAX_SEED:
        raise UsageError(f"--seed {s.seed}: must be between 0 and {MAX_SEED}")
    if not 2 <= s.samples <= MAX_SAMPLES:
        raise UsageError(f"--samples {s.samples}: must be between 2 and {MAX_SAMPLES} (the standard error needs two)")
    if s.dim is not None and (s.dim < 8 or s.dim % 8):
        raise UsageError(f"--dim {s.dim}: must be a positive multiple of 8 (e.g. 128 for the demo model)")


def _picture_path(s: ExplainSettings, default: str) -> Path:
    return s.out if s.out is not None else Path(default)


def _emit(s: ExplainSettings, payload: dict, text: str) -> None:
    print(json.dumps(_finite(payload)) if s.json_output else text, flush=True)


def _finite(value):
    """JSON has no NaN or inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# --- ldm explain schedule -----------------------------------------------------------------------


def run_schedule(s: ExplainSettings, scheduler: str | None, steps: int) -> dict:
    from ldm_cli.explain.plotting import schedule_figure
    from ldm_cli.explain.schedule import schedule_view
    from ldm_cli.pipeline.loop.schedulers import name_for_class

    config = _scheduler_config(s.model)
    name = scheduler or name_for_class(config.get("_class_name", ""))
    view = schedule_view(name, config, steps)
    path = schedule_figure(view, _picture_path(s, "schedule.png"))
    payload = {**view.to_json(), "plot": str(path)}
    _emit(s, payload, f"saved {path}  {name}, {steps} steps: timesteps {view.timesteps[:3]}...{view.timesteps[-1:]}; "
                      f"abar_0 = {view.alphas_cumprod[0]:.5f}, abar_T = {view.alphas_cumprod[-1]:.2e}")
    return payload


def _scheduler_config(m: ModelSettings) -> dict:
    """The model's scheduler config without loading its weights (a folder or bundled model), else from a load."""
    from ldm_cli.models.loading import read_scheduler_config, resolve_source

    source = resolve_source(m.model, m.revision)
    if source.kind in ("folder", "bundled"):
        return read_scheduler_config(source.path)
    return load_model(m).components.scheduler_config


# --- ldm explain forward ------------------------------------------------------------------------


def run_forward(s: ExplainSettings, image: Path, timesteps: tuple[int, ...]) -> dict:
    import numpy as np

    from ldm_cli.explain.forward import alphas_cumprod, forward_process, parse_timesteps
    from ldm_cli.explain.plotting import forward_figure
    from ldm_cli.pipeline.codec.latents import decode, to_uint8

    pixels = read_pixels(image, s.dim)
    model = load_model(s.model)
    c = model.components
    abars = alphas_cumprod(c.scheduler_config)
    parse_timesteps(",".join(map(str, timesteps)), len(abars))  # the range, now that T is known
    x0 = encode_pixels(model, pixels)
    noised = forward_process(x0, abars, timesteps, s.seed)
    rows = [(n, to_uint8(decode(c.vae, n.latents.to(c.vae.dtype)))[0]) for n in noised]
    channels = [x0[0, i].cpu().numpy() for i in range(x0.shape[1])]
    path = forward_figure(pixels, rows, channels, _picture_path(s, f"{Path(image).stem}-forward.png"))
    payload = {"plot": str(path), "image": str(image),
               "timesteps": [{"t": n.t, "alpha_cumprod": n.abar, "snr": n.snr, "latent_std": float(n.latents.std())}
                             for n in noised],
               "latent_channels": [{"mean": float(np.mean(ch)), "std": float(np.std(ch))} for ch in channels]}
    _emit(s, payload, f"saved {path}  t = {', '.join(str(t) for t in timesteps)}")
    return payload


# --- ldm elbo -----------------------------------------------------------------------------------


def run_elbo(s: ExplainSettings, image: Path, prompt: str) -> dict:
    from ldm_cli.explain import elbo
    from ldm_cli.explain.plotting import elbo_figure
    from ldm_cli.pipeline.prompts.text import encode_prompts

    pixels = read_pixels(image, s.dim)
    model = load_model(s.model)
    c = model.components
    x0 = encode_pixels(model, pixels)
    bound = elbo.bound_weights(c.scheduler_config)
    cond = encode_prompts(c.tokenizer, c.text_encoder, [prompt])
    estimate = elbo.estimate(c.unet, x0, cond, bound, c.scheduler_config.get("prediction_type", "epsilon"),
                             s.samples, s.seed)
    path = elbo_figure(estimate, prompt, _picture_path(s, f"{Path(image).stem}-elbo.png"))
    payload = {**estimate.to_json(), "prompt": prompt, "image": str(image), "seed": s.seed, "plot": str(path)}
    _emit(s, payload, f"{estimate.bits_per_dim:.4f} ± {estimate.stderr:.4f} bits/dim  ({estimate.samples} samples, "
                      f"{estimate.dims} latent dims)  plot {path}")
    return payload


# --- ldm classify -------------------------------------------------------------------------------


def check_labels(labels: list[str], labels_file: Path | None) -> list[str]:
    if labels and labels_file is not None:
        raise UsageError("pass --label ... or --labels-file FILE, not both")
    if labels_file is not None:
        try:
            lines = labels_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UsageError(f"--labels-file {labels_file}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--labels-file {labels_file}: cannot read it as UTF-8 text ({exc})") from None
        labels = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not labels:
            raise UsageError(f"--labels-file {labels_file}: no labels in it (one per line; '#' lines are skipped)")
    labels = [label.strip() for label in labels]
    if not labels or any(not label for label in labels):
        raise UsageError("give at least two labels, e.g. --label \"a red circle\" --label \"a blue square\"")
    if len(labels) < 2:
        raise UsageError(f"one label ({labels[0]!r}) is no choice; give at least two")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UsageError(f"label {repeated[0]!r} is given more than once; give each label once")
    return labels


def run_classify(s: ExplainSettings, image: Path, labels: list[str], plan) -> dict:
    from ldm_cli.explain import elbo
    from ldm_cli.explain.classify import classify
    from ldm_cli.explain.plotting import classify_figure
    from ldm_cli.pipeline.prompts.text import encode_prompts

    pixels = read_pixels(image, s.dim)
    model = load_model(s.model)
    c = model.components
    x0 = encode_pixels(model, pixels)
    bound = elbo.bound_weights(c.scheduler_config)
    conds = encode_prompts(c.tokenizer, c.text_encoder, labels)
    ranking = classify(c.unet, x0, conds, labels, bound, c.scheduler_config.get("prediction_type", "epsilon"), plan,
                       on_round=lambda done, left: say(f"{done} samples: {left} label(s) left"))
    path = classify_figure(pixels, ranking, _picture_path(s, f"{Path(image).stem}-classify.png"))
    payload = {**ranking.to_json(), "image": str(image), "seed": plan.seed, "plot": str(path)}
    key = "mse" if plan.weighting == "uniform" else "bits_per_dim"
    unit = "mse/dim" if key == "mse" else "bits/dim"
    text = "\n".join(f"{row[key]:10.5f} {unit}  {row['difference']:+.5f} ± {row['difference_stderr']:.5f} vs best  "
                     f"{row['label']}" + (f"  (dropped after {row['samples']} samples)" if row["eliminated"] else "")
                     for row in ranking.labels)
    _emit(s, payload, f"{text}\nplot {path}")
    return payload
