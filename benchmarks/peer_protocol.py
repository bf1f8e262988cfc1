"""What every peer worker does the same way (benchmarks/peers.py runs each in its own venv).

A worker loads its runtime once, then makes the same picture three times in one process: a 1-step
warm-up (first-call costs: kernel JIT, buffer allocation; not counted), then SHORT and LONG steps.
Seconds per step = (t_LONG - t_SHORT) / (LONG - SHORT), so loading, prompt encoding and VAE decoding
cancel and every peer is timed the same way. Only the standard library and numpy are used here:
the peers' venvs have neither torch's version of ldm nor ldm itself.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

PROMPT = "a red circle on a blue background"
NEGATIVE = ""
GUIDANCE = 7.5
SHORT, LONG = 2, 6


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--work", type=Path, required=True, help="folder with noise.npy/scheduler.json in, picture out")
    p.add_argument("--row", required=True, help="the row's key: the picture is saved as WORK/ROW.npy")
    return p


def measure(make, row: str, work: Path, loaded_s: float, extra: dict | None = None) -> None:
    """Time make(steps) -> uint8 [H, W, 3] as the module docstring says; print the report as the last line."""
    make(1)
    started = time.perf_counter()
    make(SHORT)
    short_s = time.perf_counter() - started
    started = time.perf_counter()
    picture = make(LONG)
    long_s = time.perf_counter() - started
    np.save(work / f"{row}.npy", np.ascontiguousarray(picture, dtype=np.uint8))
    report = {"row": row, "load_s": round(loaded_s, 2), "short_s": round(short_s, 3), "long_s": round(long_s, 3),
              "step_s": round((long_s - short_s) / (LONG - SHORT), 3), "steps": [SHORT, LONG], **(extra or {})}
    print(json.dumps(report), flush=True)


def to_uint8(image) -> np.ndarray:
    """A float picture in [0, 1] ([H, W, 3]) rounded as diffusers rounds."""
    return (np.asarray(image, dtype=np.float32) * 255).round().clip(0, 255).astype(np.uint8)
