"""Zero-shot classification by the ELBO (Li et al. 2023, "Your Diffusion Model is Secretly a
Zero-Shot Classifier"): the label whose prompt gives the image's latents the lowest negative ELBO wins.

    paired noise  every label is scored on the same (t, eps) draws, so the differences between labels
                  carry far less Monte-Carlo noise than the estimates themselves
    elimination   samples come in rounds; after `min_rounds` rounds a label whose paired mean
                  difference to the current best exceeds `z` standard errors is dropped, so the
                  remaining samples go to labels still in the running (the paper's adaptive scheme)
    weighting     "elbo": w_t of the bound (elbo.py), reported in bits/dim; "uniform": the plain mean
                  ||eps - eps_theta||^2 per dimension, which Li et al. found to classify better
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ldm_cli.explain import elbo

WEIGHTINGS = ("elbo", "uniform")


@dataclass(frozen=True)
class ClassifyPlan:
    samples: int = 64  # at most this many (t, eps) draws per label
    round_size: int = 8
    min_rounds: int = 2  # no label is dropped before this many rounds
    z: float = 3.0  # drop a label this many paired standard errors behind the best
    weighting: str = "elbo"
    seed: int = 0


@dataclass
class LabelScore:
    label: str
    errors: list[float] = field(default_factory=list)  # ||eps - eps_theta||^2 per draw
    eliminated_after: int | None = None  # samples it had when dropped


@dataclass
class Ranking:
    labels: list[dict]  # best first
    samples_run: int  # UNet evaluations (label x draw)
    weighting: str

    def to_json(self) -> dict:
        return {"labels": self.labels, "weighting": self.weighting, "unet_evaluations": self.samples_run}


def _scores(errors: torch.Tensor, t: torch.Tensor, bound: elbo.BoundWeights, weighting: str, dims: int) -> torch.Tensor:
    """Per draw, what the weighting ranks by (lower is better): [n] -> [n]."""
    if weighting == "uniform":
        return errors / dims
    return bound.total * bound.weights[t] * errors / (dims * math.log(2))


def classify(unet, x0, conds, labels: list[str], bound: elbo.BoundWeights, prediction_type: str,
             plan: ClassifyPlan, on_round=None) -> Ranking:
    """Rank `labels` (conditionings conds [L, 77, D]) for latents x0 [1, C, h, w]."""
    t, eps = elbo.draw_noise(plan.samples, x0.shape, bound.total, plan.seed)
    scores = [LabelScore(label) for label in labels]
    active = list(range(len(labels)))
    evaluations = 0
    for start in range(0, plan.samples, plan.round_size):
        for i in range(start, min(start + plan.round_size, plan.samples)):
            errs = elbo.noise_errors(unet, x0, conds[active], int(t[i]), eps[i : i + 1],
                                     float(bound.alphas_cumprod[t[i]]), prediction_type)
            evaluations += len(active)
            for j, e in zip(active, errs.tolist()):
                scores[j].errors.append(e)
        done = min(start + plan.round_size, plan.samples)
        if len(active) > 1 and done // plan.round_size >= plan.min_rounds and done < plan.samples:
            active = _survivors(scores, active, t[:done], bound, plan, x0.numel(), done)
        if on_round is not None:
            on_round(done, len(active))
        if len(active) == 1:
            break
    return Ranking(_ranked(scores, t, bound, plan.weighting, x0), evaluations, plan.weighting)


def _survivors(scores, active, t, bound, plan, dims, done) -> list[int]:
    per = {j: _scores(torch.tensor(scores[j].errors, dtype=torch.float64), t, bound, plan.weighting, dims) for j in active}
    best = min(active, key=lambda j: float(per[j].mean()))
    keep = []
    for j in active:
        diff = per[j] - per[best]  # paired: the same draws
        se = float(diff.std(unbiased=True)) / math.sqrt(len(diff))
        if j != best and float(diff.mean()) > plan.z * max(se, 1e-12):
            scores[j].eliminated_after = done
        else:
            keep.append(j)
    return keep


def _ranked(scores: list[LabelScore], t, bound, weighting: str, x0) -> list[dict]:
    """The winner (the best estimate among the labels never dropped), then the others by `difference`:
    their paired mean difference to the winner on the draws they share, comparable even for a label
    dropped early. Each label's own estimate uses the draws it got."""
    dims = x0.numel()
    rows = []
    for s in scores:
        n = len(s.errors)
        errors = torch.tensor(s.errors, dtype=torch.float64)
        estimate = elbo.summarise(errors, t[:n], bound, x0)
        uniform = errors / dims
        rows.append({
            "label": s.label, "bits_per_dim": estimate.bits_per_dim, "stderr": estimate.stderr,
            "mse": float(uniform.mean()), "mse_stderr": _stderr(uniform), "samples": n,
            "eliminated": s.eliminated_after is not None, "_errors": errors,
        })
    key = "mse" if weighting == "uniform" else "bits_per_dim"
    rows.sort(key=lambda r: (r["eliminated"], -r["samples"] if r["eliminated"] else 0, r[key]))
    best = rows[0]["_errors"]
    for row in rows:
        errors = row.pop("_errors")
        n = len(errors)
        diff = _scores(errors, t[:n], bound, weighting, dims) - _scores(best[:n], t[:n], bound, weighting, dims)
        row["difference"], row["difference_stderr"] = float(diff.mean()), _stderr(diff)
    return rows[:1] + sorted(rows[1:], key=lambda r: r["difference"])


def _stderr(values: torch.Tensor) -> float:
    return float(values.std(unbiased=True)) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
