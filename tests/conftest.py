"""Shared fixtures: a tiny real model in diffusers format, a runner for the real CLI, and the small input
files (pictures, masks, a LoRA) that several test files start from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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


@pytest.fixture(scope="session")
def init_png(tmp_path_factory) -> Path:
    """A 64x64 blue field with a red square and a little noise: the picture img2img starts from."""
    import numpy as np
    from PIL import Image

    x = np.zeros((64, 64, 3), np.uint8)
    x[:, :] = [30, 60, 200]
    x[16:48, 12:40] = [220, 20, 20]
    x += np.random.default_rng(0).integers(0, 20, x.shape, dtype=np.uint8)
    path = tmp_path_factory.mktemp("init") / "init.png"
    Image.fromarray(x).save(path)
    return path


class InpaintPictures(NamedTuple):
    init: Path
    mask: Path


@pytest.fixture(scope="session")
def inpaint_pictures(tmp_path_factory) -> InpaintPictures:
    """A 64x64 picture (blue field, yellow box) and its inpainting mask, with grey edges on both sides of 0.5."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("inpaint")
    x = np.zeros((64, 64, 3), np.uint8)
    x[:, :] = [30, 60, 200]
    x[8:30, 36:60] = [220, 200, 20]
    x += np.random.default_rng(0).integers(0, 20, x.shape, dtype=np.uint8)
    Image.fromarray(x).save(folder / "init.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[20:44, 14:46] = 255
    mask[44:50, 14:20] = 200  # grey: repainted (>= 0.5)
    mask[14:20, 14:46] = 100  # grey: kept (< 0.5)
    Image.fromarray(mask).save(folder / "mask.png")
    return InpaintPictures(folder / "init.png", folder / "mask.png")


@pytest.fixture(scope="session")
def kohya_lora_tensors(tiny_model) -> dict:
    """A kohya LoRA (rank 4, alpha 4) on the tiny UNet's attn1.to_q, attn1.to_v and attn2.to_k, strong enough
    to show; callers save it with the metadata they need (read it, do not change it)."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    generator = torch.Generator().manual_seed(3)
    tensors = {}
    for name, module in unet.named_modules():
        if name.endswith(("attn1.to_q", "attn2.to_k", "attn1.to_v")):
            key = "lora_unet_" + name.replace(".", "_")
            out_features, in_features = module.weight.shape
            tensors[f"{key}.lora_down.weight"] = torch.randn(4, in_features, generator=generator)
            tensors[f"{key}.lora_up.weight"] = torch.randn(out_features, 4, generator=generator)
            tensors[f"{key}.alpha"] = torch.tensor(4.0)
    return tensors
