"""--model sources: diffusers folder, single-file checkpoint, Hub id via the HF cache, LDM_MODEL;
and every way a model can be missing, unsafe or broken gets one clear line and a non-zero exit."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_checkpoint import config_folder, export_single_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _gen(ldm, model, out, *extra):
    return ldm("generate", "a red circle", "--model", model, "--steps", "2", "--seed", "1", "--out", out, *extra)


@pytest.fixture(scope="module")
def single_file(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    return export_single_file(tiny_model, folder / "tiny-sd1.safetensors"), config_folder(tiny_model, folder / "cfg")


def _copy_model(tiny_model, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model, tmp_path / "copy"))


def test_single_file_checkpoint_gives_the_same_image_as_the_folder(ldm, tiny_model, single_file, tmp_path):
    checkpoint, configs = single_file
    assert _gen(ldm, tiny_model, "folder.png").code == 0
    result = _gen(ldm, checkpoint, "file.png", "--config", configs)
    assert result.code == 0, result.stderr
    assert np.array_equal(_pixels(tmp_path / "folder.png"), _pixels(tmp_path / "file.png"))
    text = Image.open(tmp_path / "file.png").text["parameters"]
    file_hash = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert f"Model hash: {file_hash[:10]}" in text and "Model: tiny-sd1" in text


def test_single_file_with_the_wrong_configs_is_a_clear_error(ldm, single_file):
    checkpoint, _ = single_file  # the bundled SD1.5 configs do not fit the tiny weights
    result = _gen(ldm, checkpoint, "x.png")
    assert result.code == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("ldm: error: could not load checkpoint") and "--config" in last


def test_pickle_checkpoints_are_refused_unless_allowed(ldm, tiny_model, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    result = _gen(ldm, ckpt, "x.png")
    assert result.code == 1 and "pickle" in result.stderr and "--allow-pickle" in result.stderr

    model = _copy_model(tiny_model, tmp_path)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(model / "unet", safe_serialization=False)
    refused = _gen(ldm, model, "x.png")
    assert refused.code == 1 and "only pickle weights" in refused.stderr
    assert not (tmp_path / "x.png").exists()
    allowed = _gen(ldm, model, "x.png", "--allow-pickle")
    assert allowed.code == 0, allowed.stderr


def test_folder_missing_a_component(ldm, tiny_model, tmp_path):
    model = _copy_model(tiny_model, tmp_path)
    shutil.rmtree(model / "vae")
    result = _gen(ldm, model, "x.png")
    assert result.code == 1 and "vae/" in result.stderr and "missing" in result.stderr
    (model / "model_index.json").unlink()
    assert "no model_index.json" in _gen(ldm, model, "x.png").stderr


@pytest.mark.parametrize("component,filename", [("unet", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors")])
def test_truncated_weights_are_a_clear_error(ldm, tiny_model, tmp_path, component, filename):
    model = _copy_model(tiny_model, tmp_path)
    weights = model / component / filename
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = _gen(ldm, model, "x.png")
    assert result.code == 1
    assert f"could not load {component}" in result.stderr and "re-download" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()


def test_corrupt_or_foreign_single_files(ldm, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    result = _gen(ldm, garbage, "x.png")
    assert result.code == 1 and "truncated or corrupt" in result.stderr
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"conditioner.embedders.0.weight": torch.zeros(2)}, str(foreign))
    assert "not an SD1.x checkpoint" in _gen(ldm, foreign, "x.png").stderr


def _hub_cache(tiny_model, cache: Path) -> Path:
    repo = cache / "models--acme--tiny-sd"
    shutil.copytree(tiny_model, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def test_hub_id_loads_from_the_hf_cache_offline(ldm, tiny_model, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(_hub_cache(tiny_model, tmp_path / "hub")))
    assert _gen(ldm, "acme/tiny-sd", "a.png", "--offline").code == 0
    assert _gen(ldm, "acme/tiny-sd", "b.png", "--offline", "--revision", COMMIT).code == 0
    assert _gen(ldm, tiny_model, "c.png").code == 0
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "c.png"))
    record = json.loads(Image.open(tmp_path / "b.png").text["ldm"])
    assert record["model"]["spec"] == "acme/tiny-sd" and record["model"]["revision"] == COMMIT
    missing = _gen(ldm, "acme/not-cached", "d.png", "--offline")
    assert missing.code == 1 and "not in the Hugging Face cache" in missing.stderr


def test_ldm_model_env_and_python_dash_m_in_a_fresh_process(tiny_model, tmp_path):
    """The real entry point in a fresh process: HF_HUB_OFFLINE and LDM_MODEL from the environment."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(_hub_cache(tiny_model, tmp_path / "hub")),
           "LDM_MODEL": "acme/tiny-sd"}
    cmd = [sys.executable, "-m", "ldm_cli", "generate", "a cat", "--steps", "2", "--seed", "4", "--out", "env.png"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(Image.open(tmp_path / "env.png").text["ldm"])["model"]["spec"] == "acme/tiny-sd"
    env["LDM_MODEL"] = "acme/absent"
    failed = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "acme/absent" in failed.stderr and "Traceback" not in failed.stderr
