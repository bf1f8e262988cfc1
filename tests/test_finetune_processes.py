"""`ldm finetune` as real processes: a signal saves a checkpoint; two processes via accelerate launch."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file
from test_finetune_train import make_shapes

from ldm_cli.training.checkpoints import latest_checkpoint


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.setdefault("LDM_CACHE_DIR", str(tmp_path / "cache"))
    return env


def _logged_steps(run: Path) -> int:
    try:
        with open(run / "train-log.csv", newline="") as handle:
            return len(list(csv.DictReader(handle)))
    except OSError:
        return 0


def test_sigterm_saves_a_complete_checkpoint_and_exits_cleanly(tmp_path, tiny_model):
    data = make_shapes(tmp_path / "data")
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "ldm_cli", "finetune", str(data), "--model", str(tiny_model), "-o", str(run),
         "--max-steps", "100000", "--checkpoint-every", "100000", "--rank", "4"],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while _logged_steps(run) < 2:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "SIGTERM received" in stderr and "--resume latest" in stderr and "Traceback" not in stderr
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["step"] == _logged_steps(run) >= 2  # the step it stopped at, saved completely
    assert load_file(str(checkpoint / "trainable.safetensors"))
    assert not list((run / "checkpoints").glob(".tmp-*"))


def test_two_processes_with_accelerate_launch(tmp_path, tiny_model):
    data = make_shapes(tmp_path / "data")
    run = tmp_path / "run"
    launcher = Path(sys.executable).with_name("accelerate")
    result = subprocess.run(
        # accelerate 1.15 runs `--cpu --num_processes 2` as ONE process unless MPI is set up; --multi_gpu
        # goes through torchrun, and ldm picks CPU + gloo itself when there is no GPU.
        [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "ldm_cli", "finetune", str(data), "--model", str(tiny_model), "-o", str(run),
         "--max-steps", "2", "--checkpoint-every", "1", "--rank", "4",
         "--validation-steps", "1"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lora = load_file(str(run / "run.safetensors"))
    assert lora and all(t.isfinite().all() for t in lora.values())
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    assert state["processes"] == 2 and state["step"] == 2
    rng = load_file(str(latest_checkpoint(run) / "rng.safetensors"))
    assert {"generator.0", "generator.1"} <= rng.keys() and not (rng["generator.0"] == rng["generator.1"]).all()
    assert result.stderr.count("saved ") == 1  # one output, written once, by the main process
