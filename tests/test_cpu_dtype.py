"""--dtype auto on the CPU (models/devices.auto_cpu_dtype): bf16 only with native bf16 and an SD-sized UNet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from ldm_cli.models.devices import BF16_MIN_UNET_WIDTH, auto_cpu_dtype, cpu_bf16_flags, generation_dtype

NATIVE = bool(cpu_bf16_flags())


def test_auto_follows_the_cpu_flags_and_the_unet_width():
    wide, narrow = {"block_out_channels": [320, 640, 1280, 1280]}, {"block_out_channels": [32, 64]}
    assert auto_cpu_dtype(wide)[0] == ("bf16" if NATIVE else "fp32")
    assert auto_cpu_dtype(narrow)[0] == "fp32"
    assert "narrow" in auto_cpu_dtype(narrow)[1] or not NATIVE
    assert generation_dtype("auto", "cpu", wide)[0] == (torch.bfloat16 if NATIVE else torch.float32)
    assert generation_dtype("fp32", "cpu", wide) == (torch.float32, "--dtype fp32")
    assert generation_dtype("auto", "cuda", wide)[0] == torch.float16  # CUDA keeps fp16


def test_cpuinfo_flags_are_read_from_proc():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert NATIVE == ("avx512_bf16" in text or "amx_bf16" in text)


@pytest.fixture
def wide_config_model(tiny_model, tmp_path):
    """The tiny model with a UNet config as wide as SD's: enough for --dry-run, which loads no weights."""
    folder = Path(shutil.copytree(tiny_model, tmp_path / "wide"))
    path = folder / "unet" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "block_out_channels": [BF16_MIN_UNET_WIDTH + 64, 640]}))
    return folder


def test_dry_run_shows_the_dtype_auto_picks(ldm, wide_config_model, tiny_model):
    wide = json.loads(ldm("generate", "a cat", "--model", wide_config_model, "--dry-run", "--json").stdout)
    assert wide["dtype"] == ("bf16" if NATIVE else "fp32")
    narrow = json.loads(ldm("generate", "a cat", "--model", tiny_model, "--dry-run", "--json").stdout)
    assert narrow["dtype"] == "fp32"


def test_the_image_records_its_dtype_and_why(ldm, tiny_model, tmp_path):
    assert ldm("generate", "a cat", "--model", tiny_model, "--steps", "1", "--seed", "1", "--out", "a.png").code == 0
    record = json.loads(Image.open(tmp_path / "a.png").text["ldm"])
    assert record["dtype"] == "fp32" and record["dtype_reason"].startswith("auto: ")
    assert ldm("generate", "a cat", "--model", tiny_model, "--steps", "1", "--seed", "1", "--dtype", "fp32",
               "--out", "b.png").code == 0
    assert json.loads(Image.open(tmp_path / "b.png").text["ldm"])["dtype_reason"] == "--dtype fp32"
