"""Shared fixtures: a tiny real model in diffusers format, and a runner for the real CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Tests never touch the network or the user's caches.
os.environ["HF_HUB_OFFLINE"] = "1"
# Tiny models gain nothing from a second thread and lose much when the cores are busy; subprocesses
# started by tests inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LDM_CACHE_DIR", str(Path(__file__).parent / ".cache-ldm"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random SD1-family model (native size 64x64) saved in diffusers format."""
    from ldm_cli.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny", seed=0)


@pytest.fixture(scope="session")
def consistency_model(tiny_model, tmp_path_factory):
    """make(SCHEDULER_CLASS): a copy of the tiny model with an LCM-style UNet (`time_cond_proj_dim` 16:
    guidance goes in as an embedding) and that diffusers scheduler class in its config; one per class."""
    import json
    import shutil

    made = {}

    def make(scheduler_class: str) -> Path:
        if scheduler_class not in made:
            import diffusers

            folder = Path(shutil.copytree(tiny_model, tmp_path_factory.mktemp(scheduler_class) / "model"))
            config = {k: v for k, v in json.loads((folder / "unet" / "config.json").read_text()).items() if not k.startswith("_")}
            torch.manual_seed(5)
            diffusers.UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": 16}).save_pretrained(folder / "unet")
            scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
            getattr(diffusers, scheduler_class).from_config(scheduler_config).save_pretrained(folder / "scheduler")
            made[scheduler_class] = folder
        return made[scheduler_class]

    return make


@pytest.fixture
def ldm(capsys, monkeypatch, tmp_path):
    """Run `ldm ARGS...` in-process from a fresh working folder; returns exit code and output."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> CliResult:
        from ldm_cli.cli import main

        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
