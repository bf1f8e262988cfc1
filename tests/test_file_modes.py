"""Output files get the mode any new file gets (0666 & ~umask), not mkstemp's/safetensors' 0600."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from ldm_cli.files.images import save_png
from ldm_cli.training.methods import save_lora


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_png_gets_the_normal_mode(tmp_path, umask):
    path = save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "a.png", {"parameters": "x"})
    assert _mode(path) == 0o666 & ~umask
    second = save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "a.png")  # still never overwrites
    assert second.name == "a-2.png" and _mode(second) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_latent_file_gets_the_normal_mode(tmp_path, umask):
    from ldm_cli.files.latent_files import LatentHeader, save_latents

    header = LatentHeader(scaling_factor=0.18215, latent_kind="mean", model="tiny", vae_sha256="0" * 64)
    path = save_latents(torch.zeros(1, 4, 2, 2), header, tmp_path / "x.latent.safetensors")
    assert _mode(path) == 0o666 & ~umask


def test_lora_file_gets_the_normal_mode(tmp_path, umask):
    path = save_lora(tmp_path / "out" / "style.safetensors", {"a": torch.zeros(2)}, {"ldm.format": "kohya"})
    assert _mode(path) == 0o666 & ~umask


def test_generated_png_through_the_cli(ldm, tiny_model, tmp_path):
    old = os.umask(0o022)
    try:
        result = ldm("generate", "a cat", "--model", tiny_model, "--steps", "1", "--seed", "1", "--out", "o.png")
    finally:
        os.umask(old)
    assert result.code == 0, result.stderr
    assert _mode(tmp_path / "o.png") == 0o644


def test_training_checkpoint_files_get_the_normal_mode(tmp_path, umask):
    from ldm_cli.training.checkpoints import save_checkpoint

    folder = save_checkpoint(tmp_path, 1, {"trainable": {"w": torch.zeros(2)}}, {"optimizer": {"lr": 1}}, {"step": 1}, keep=2)
    for path in folder.iterdir():
        assert _mode(path) == 0o666 & ~umask, path.name
    assert _mode(folder) == 0o777 & ~umask
