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
