"""Timing and memory measurements. Every timed ldm run goes through ldm's own library calls, every
reference run through diffusers' StableDiffusionPipeline, on the same loaded components."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ldm_cli.reference import reference_pipeline
from ldm_cli.pipeline.codec import latents as latent_ops
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage

PROMPT = "a red circle on a blue background"
ROOT = Path(__file__).resolve().parent.parent


class StepClock:
    """Seconds per denoising step: from the start of the first UNet call to the end of the last step.

    The start is a forward pre-hook on the UNet; each step's end is the sampler's step callback.
    A compiled UNet cannot carry the hook, so then the clock uses the intervals between step ends.
    """

    def __init__(self, unet=None):
        self.first_unet = None
        self.ends: list[float] = []
        self._handle = unet.register_forward_pre_hook(self._pre) if unet is not None else None

    def _pre(self, module, args):
        if self.first_unet is None:
            self.first_unet = time.perf_counter()

    def on_step(self, *args, **kwargs):
        self.ends.append(time.perf_counter())
        return kwargs.get("callback_kwargs", args[-1] if len(args) == 4 else None) or {}

    def per_step(self) -> float:
        if self._handle is not None:
            self._handle.remove()
        if self.first_unet is not None:
            return (self.ends[-1] - self.first_unet) / len(self.ends)
        return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)


@contextlib.contextmanager
def latents_only():
    """Skip ldm's VAE decode, as output_type="latent" skips diffusers': the loops are what is timed."""
    original = latent_ops.decode
    latent_ops.decode = lambda vae, latents: torch.zeros(1, 3, 8, 8)
    try:
        yield
    finally:
        latent_ops.decode = original


def ldm_step_seconds(components, dtype, size, steps, scheduler, seed=0, guidance=7.5, hook=True) -> float:
    clock = StepClock(components.unet if hook else None)
    plan = SamplingPlan(size, size, steps, guidance, scheduler)
    with latents_only():
        TextToImage(components, "cpu", dtype).generate(PROMPT, seed, plan, lambda info: clock.on_step(info))
    return clock.per_step()


def diffusers_step_seconds(components, size, steps, scheduler, seed=0, guidance=7.5) -> float:
    pipe = reference_pipeline(components, scheduler)
    clock = StepClock(components.unet)
    pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
         generator=torch.Generator().manual_seed(seed), output_type="latent",
         callback_on_step_end=lambda p, i, t, kw: clock.on_step(p, i, t, kw))
    return clock.per_step()


def ldm_image(components, dtype, size, steps, scheduler, seed=0) -> np.ndarray:
    plan = SamplingPlan(size, size, steps, 7.5, scheduler)
    return TextToImage(components, "cpu", dtype).generate(PROMPT, seed, plan).pixels


def reference_image(components, size, steps, scheduler, seed=0) -> np.ndarray:
    out = reference_pipeline(components, scheduler)(
        PROMPT, num_inference_steps=steps, guidance_scale=7.5, height=size, width=size,
        generator=torch.Generator().manual_seed(seed), output_type="np")
    return (out.images[0] * 255).round().astype("uint8")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def unet_flops(unet, size_latent: int, batch: int, dtype) -> int:
    """FLOPs of one UNet call, counted by torch's FlopCounterMode (attention counted as its matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ldm_cli.models.performance import use_classic_attention, use_sdpa

    cfg = unet.config
    x = torch.randn(batch, cfg.in_channels, size_latent, size_latent, dtype=dtype)
    context = torch.randn(batch, 77, cfg.cross_attention_dim, dtype=dtype)
    use_classic_attention(unet)  # the counter knows bmm/baddbmm; SDPA's CPU kernel is not in its table
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            unet(x, 999, encoder_hidden_states=context)
    finally:
        use_sdpa(unet)
    return int(counter.get_total_flops())


def matmul_peak(dtype, n: int, repeats: int = 3) -> float:
    """Best FLOP/s of an n x n x n matmul: the practical ceiling for this machine and dtype."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def run_measured(args: list[str], cwd: Path, threads: int | None = None) -> dict:
    """Run a command in a new process: wall seconds, its own peak RSS (bytes, via benchmarks.peak_rss)
    and its last stdout line parsed as JSON."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out_path, err_path, rss_path = cwd / ".stdout", cwd / ".stderr", cwd / ".peak_rss"
    launcher = [sys.executable, "-m", "benchmarks.peak_rss", str(rss_path)]
    started = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        code = subprocess.run([*launcher, *map(str, args)], cwd=cwd, stdout=out, stderr=err, env=env).returncode
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{err_path.read_text()[-2000:]}")
    stdout = out_path.read_text().strip()
    last = stdout.splitlines()[-1] if stdout else "{}"
    return {"wall_s": wall, "peak_rss_bytes": int(rss_path.read_text()), "report": json.loads(last)}


def help_seconds(repeats: int = 5) -> float:
    """`ldm --help` from the shell (console script), best of a few."""
    ldm = Path(sys.executable).parent / "ldm"
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([str(ldm), "--help"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def best_of(repeats: int, measure) -> float:
    return min(measure() for _ in range(repeats))
