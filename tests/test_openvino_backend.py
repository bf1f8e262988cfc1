"""`--backend openvino`: OpenVINO runs the UNet inside ldm's own loop.

The picture matches torch's at f32 within the tolerance measured on the tiny model (max 1/255),
the export is written once and reused (same files, no second export), flags that need the torch
UNet are refused one line each, and without the package the user gets the pip command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldm_cli.pipeline.codec.quality import psnr

REPO = Path(__file__).resolve().parent.parent
NEEDS_OPENVINO = "needs the optional `openvino` package (pip install 'ldm-cli[openvino]')"


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ov-cache")


def _generate(ldm, tiny_model, out, *extra):
    result = ldm("generate", "a red circle on a blue background", "--model", tiny_model, "--steps", "4", "--seed", "3",
                 "--out", out, *extra)
    assert result.code == 0, result.stderr
    return result


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def _exports(cache: Path) -> list[Path]:
    return sorted((cache / "openvino").glob("*/unet.xml"))


@pytest.mark.parametrize("scheduler", ["ddim", "euler-a"])
def test_openvino_picture_equals_torch_at_fp32(ldm, tiny_model, ov_cache, monkeypatch, tmp_path, scheduler):
    pytest.importorskip("openvino", reason=NEEDS_OPENVINO)
    monkeypatch.setenv("LDM_CACHE_DIR", str(ov_cache))
    common = ("--dtype", "fp32", "--scheduler", scheduler)
    _generate(ldm, tiny_model, tmp_path / "torch.png", *common)
    _generate(ldm, tiny_model, tmp_path / "ov.png", *common, "--backend", "openvino")
    torch_picture, ov_picture = _pixels(tmp_path / "torch.png"), _pixels(tmp_path / "ov.png")
    assert np.abs(torch_picture - ov_picture).max() <= 2  # measured: 1/255, mean 0.0002
    assert psnr(torch_picture.astype(np.uint8), ov_picture.astype(np.uint8)) > 50
    record = json.loads(Image.open(tmp_path / "ov.png").text["ldm"])
    assert record["backend"]["name"] == "openvino" and record["backend"]["precision"] == "f32"
    assert record["dtype"] == "fp32" and "openvino" in record["dtype_reason"]
    assert "backend" not in json.loads(Image.open(tmp_path / "torch.png").text["ldm"])




def test_auto_runs_openvinos_default_precision_and_records_it(ldm, tiny_model, ov_cache, monkeypatch, tmp_path):
    """--dtype auto: bf16 on a CPU with native bf16 (torch loads bf16 weights too), else f32."""
    pytest.importorskip("openvino", reason=NEEDS_OPENVINO)
    from ldm_cli.models.backends import openvino_precision

    monkeypatch.setenv("LDM_CACHE_DIR", str(ov_cache))
    _generate(ldm, tiny_model, tmp_path / "torch.png", "--dtype", "fp32", "--scheduler", "ddim")
    result = _generate(ldm, tiny_model, tmp_path / "ov.png", "--scheduler", "ddim", "--backend", "openvino")
    expected = openvino_precision("auto")[0]
    record = json.loads(Image.open(tmp_path / "ov.png").text["ldm"])
    assert record["backend"]["precision"] == expected and record["backend"]["precision_reason"].startswith("auto:")
    assert record["dtype"] == ("bf16" if expected == "bf16" else "fp32") and f"at {expected}" in result.stderr
    # measured on the tiny model in bf16, 4 DDIM steps: 46.7 dB against torch fp32 (torch's own bf16: 46.1 dB)
    assert psnr(_pixels(tmp_path / "torch.png").astype(np.uint8), _pixels(tmp_path / "ov.png").astype(np.uint8)) > 35

def test_openvino_takes_the_guidance_embedding_of_an_lcm_unet(ldm, tiny_model, ov_cache, monkeypatch, tmp_path):
    """A guidance-distilled UNet gets `timestep_cond` (its w embedding): a fourth OpenVINO input."""
    pytest.importorskip("openvino", reason=NEEDS_OPENVINO)
    import shutil

    import torch
    from diffusers import UNet2DConditionModel

    monkeypatch.setenv("LDM_CACHE_DIR", str(ov_cache))
    folder = Path(shutil.copytree(tiny_model, tmp_path / "lcm"))
    config = {k: v for k, v in json.loads((folder / "unet" / "config.json").read_text()).items() if not k.startswith("_")}
    torch.manual_seed(5)
    UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": 16}).save_pretrained(folder / "unet")
    common = ("--dtype", "fp32", "--scheduler", "lcm", "--g", "8")
    _generate(ldm, folder, tmp_path / "torch.png", *common)
    result = _generate(ldm, folder, tmp_path / "ov.png", *common, "--backend", "openvino")
    assert "x16 at f32" in result.stderr  # the [1, 16] guidance embedding is an input of the export
    assert np.abs(_pixels(tmp_path / "torch.png") - _pixels(tmp_path / "ov.png")).max() <= 2

def test_export_is_cached_and_keyed_by_shape_and_lora(ldm, tiny_model, monkeypatch, tmp_path):
    pytest.importorskip("openvino", reason=NEEDS_OPENVINO)
    monkeypatch.setenv("LDM_CACHE_DIR", str(tmp_path / "cache"))
    args = ("--backend", "openvino", "--dtype", "fp32")
    first = _generate(ldm, tiny_model, tmp_path / "a.png", *args)
    assert "openvino: exporting the UNet" in first.stderr
    [xml] = _exports(tmp_path / "cache")
    written = (xml.stat().st_mtime_ns, (xml.parent / "unet.bin").stat().st_mtime_ns)
    second = _generate(ldm, tiny_model, tmp_path / "b.png", *args)
    assert "exporting" not in second.stderr and f"using the cached UNet export {xml.parent}" in second.stderr
    assert _exports(tmp_path / "cache") == [xml]
    assert (xml.stat().st_mtime_ns, (xml.parent / "unet.bin").stat().st_mtime_ns) == written
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "b.png"))
    _generate(ldm, tiny_model, tmp_path / "g1.png", *args, "--g", "1")  # no CFG: batch 1, another static shape
    assert len(_exports(tmp_path / "cache")) == 2
    lora = _lora_file(tiny_model, tmp_path)
    with_lora = _generate(ldm, tiny_model, tmp_path / "lora.png", *args, "--lora", f"{lora}:0.8")
    assert "openvino: exporting the UNet" in with_lora.stderr  # the merged weights differ: their own export
    assert len(_exports(tmp_path / "cache")) == 3
    assert np.abs(_pixels(tmp_path / "lora.png") - _pixels(tmp_path / "a.png")).max() > 10
    assert not list((tmp_path / "cache" / "openvino").glob(".export-*"))  # no temporary folder left
    (xml.parent / "unet.bin").write_bytes(b"cut")  # a damaged cache: one line naming the folder to delete
    damaged = ldm("generate", "a red circle on a blue background", "--model", tiny_model, "--steps", "4", "--seed", "3",
                  "--out", tmp_path / "c.png", *args)
    assert damaged.code == 1 and f"the cached OpenVINO export {xml.parent} cannot be read" in damaged.stderr
    assert not (tmp_path / "c.png").exists()


def _lora_file(tiny_model, tmp_path) -> Path:
    """A LoRA with non-zero up weights, as `ldm finetune` saves it."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from ldm_cli.training.methods import TEXT_TARGETS, UNET_TARGETS, add_lora, lora_state, save_lora

    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    text_encoder = CLIPTextModel.from_pretrained(tiny_model, subfolder="text_encoder")
    torch.manual_seed(0)
    add_lora(unet, 4, 8.0, UNET_TARGETS)
    add_lora(text_encoder, 4, 8.0, TEXT_TARGETS)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return save_lora(tmp_path / "style.safetensors", lora_state(unet, text_encoder, rank=4, alpha=8.0, kohya=False), {})


def test_a_killed_exports_temporary_folder_is_removed(tmp_path):
    from ldm_cli.models.openvino_unet import EXPORT_PREFIX, remove_stale_exports

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{EXPORT_PREFIX}{int(gone.stdout)}-abc"
    (stale / "unet.xml").parent.mkdir()
    (stale / "unet.xml").write_text("<half")
    ours = tmp_path / f"{EXPORT_PREFIX}{os.getpid()}-def"
    ours.mkdir()
    remove_stale_exports(tmp_path)
    assert not stale.exists() and ours.exists()


@pytest.mark.parametrize("flags, named", [
    (["--compile"], "--compile"),
    (["--channels-last"], "--channels-last"),
    (["--cache-interval", "3"], "--cache-interval 3"),
    (["--token-merging", "0.5"], "--token-merging 0.5"),
    (["--attention-maps"], "--attention-maps"),
    (["--device", "cuda"], "--device cuda"),
    (["--dtype", "fp16"], "--dtype fp16"),
])
def test_what_openvino_cannot_run_is_refused_before_loading(ldm, tiny_model, flags, named):
    result = ldm("generate", "a cat", "--model", tiny_model, "--backend", "openvino", *flags)
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ldm: error: {named}")
    assert "--backend torch" in line or "--dtype auto" in line
    assert "loading" not in result.stderr


def test_unknown_backend_is_a_usage_error(ldm, tiny_model):
    result = ldm("generate", "a cat", "--model", tiny_model, "--backend", "tensorrt")
    assert result.code == 2 and "--backend 'tensorrt': choose torch or openvino" in result.stderr


@pytest.mark.parametrize("command", [["generate", "a cat", "--steps", "2"], ["serve", "--port", "0"]])
def test_without_the_package_the_user_gets_the_pip_command(tiny_model, tmp_path, command):
    hide = "import sys; sys.modules['openvino'] = None; from ldm_cli.cli import main; main(sys.argv[1:])"
    result = subprocess.run([sys.executable, "-c", hide, *command, "--model", str(tiny_model), "--backend", "openvino"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == ("ldm: error: --backend openvino needs the optional openvino package: "
                    "pip install 'ldm-cli[openvino]' (or pip install openvino==2026.4.1)")


def test_serve_runs_the_openvino_unet(tiny_model, ov_cache, monkeypatch):
    """`ldm serve --backend openvino` answers with the torch server's picture (f32, same request)."""
    pytest.importorskip("openvino", reason=NEEDS_OPENVINO)
    from serve_helpers import call, pixels_of_b64

    from ldm_cli.models.performance import PerformanceSettings
    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.serve.server import ServeSettings, serving_in_thread

    monkeypatch.setenv("LDM_CACHE_DIR", str(ov_cache))
    body = {"prompt": "a red circle on a blue background", "steps": 4, "seed": 3, "sampler_name": "DDIM",
            "width": 64, "height": 64}
    answers = {}
    for backend in ("torch", "openvino"):
        settings = ServeSettings(model=ModelSettings(model=str(tiny_model), device="cpu", dtype="fp32", offline=True),
                                 performance=PerformanceSettings(backend=backend), host="127.0.0.1", port=0)
        with serving_in_thread(settings) as (url, _):
            status, _, answers[backend] = call(url, "/sdapi/v1/txt2img", body)
        assert status == 200, answers[backend]
    torch_picture, ov_picture = (pixels_of_b64(answers[b]["images"][0]).astype(np.int16) for b in ("torch", "openvino"))
    assert np.abs(torch_picture - ov_picture).max() <= 2
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(answers["openvino"]["images"][0]))) as png:
        assert json.loads(png.info["ldm"])["backend"]["precision"] == "f32"


def test_dry_run_names_the_backend_and_its_precision(ldm, tiny_model):
    pytest.importorskip("openvino", reason=NEEDS_OPENVINO)
    plain = ldm("generate", "a cat", "--model", tiny_model, "--dtype", "fp32", "--dry-run")
    result = ldm("generate", "a cat", "--model", tiny_model, "--dtype", "fp32", "--backend", "openvino", "--dry-run")
    assert result.code == 0 and "loading" not in result.stderr
    assert "fp32 (torch); the UNet in OpenVINO at f32" in result.stdout and "'openvino'" in result.stdout

    def peak(text):  # "memory: ~0.40 GiB peak ..." -> the estimate counts OpenVINO's copy of the UNet
        return next(line for line in text.splitlines() if line.startswith("memory:"))

    assert peak(result.stdout) != peak(plain.stdout)


def test_a_recorded_torch_only_setting_is_dropped_with_a_warning(ldm, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_CACHE_DIR", str(tmp_path / "cache"))
    made = ldm("generate", "a cat", "--model", tiny_model, "--steps", "3", "--seed", "2", "--cache-interval", "2",
               "--out", "cached.png")
    assert made.code == 0, made.stderr
    result = ldm("generate", "--from", "cached.png", "--backend", "openvino", "--dtype", "fp32", "--out", "ov.png")
    assert result.code == 0, result.stderr
    assert "runs the recorded --cache-interval 2 without it" in result.stderr
    record = json.loads(Image.open(tmp_path / "ov.png").text["ldm"])
    assert record["settings"]["cache_interval"] == 1
