"""Never write a broken image: NaN guard with float32 retry, and Ctrl-C leaves no partial files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from diffusers import AutoencoderKL

from ldm_cli.pipeline.codec import latents as latent_ops
from ldm_cli.errors import GenerationError


@pytest.fixture
def vae(tiny_model):
    return AutoencoderKL.from_pretrained(tiny_model / "vae").eval()


def test_fp16_overflow_is_decoded_again_in_float32(vae):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(3e4)  # activations far beyond fp16's 65504
    expected = latent_ops.decode(vae, latents)
    vae.to(torch.float16)
    with torch.no_grad():
        raw = vae.decode(latent_ops.unscale(vae, latents.half()), return_dict=False)[0]
    assert not torch.isfinite(raw).all()  # the failure really happens in fp16...
    recovered = latent_ops.decode(vae, latents.half())
    assert torch.isfinite(recovered).all()  # ...and the guard recovers the float32 result
    assert torch.allclose(recovered, expected, atol=2e-3)  # only fp16 weight rounding differs
    assert vae.dtype == torch.float16  # the retry leaves the model as it was


def test_nan_everywhere_is_refused(vae):
    with torch.no_grad():
        vae.decoder.conv_out.weight.fill_(float("nan"))
    with pytest.raises(GenerationError, match="NaN"):
        latent_ops.decode(vae, torch.zeros(1, 4, 8, 8))
    with pytest.raises(GenerationError, match="NaN/inf latents"):
        latent_ops.decode(vae, torch.full((1, 4, 8, 8), float("nan")))


def test_nan_model_writes_no_image(ldm, tiny_model, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model = shutil.copytree(tiny_model, tmp_path / "nan-model")
    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["decoder.conv_out.weight"] = torch.full_like(state["decoder.conv_out.weight"], float("nan"))
    save_file(state, str(weights))
    result = ldm("generate", "a cat", "--model", model, "--steps", "2", "--seed", "1", "--out", "out")
    assert result.code == 1 and "NaN" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ctrl_c_stops_cleanly_without_partial_files(tiny_model, tmp_path):
    cmd = [sys.executable, "-m", "ldm_cli", "generate", "a cat", "--model", str(tiny_model), "--steps", "999",
           "--scheduler", "ddim", "--dim", "256", "--seed", "1", "--out", "out", "--save-intermediates"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = b""
    deadline = time.time() + 240
    while b"image 1/1" not in seen and time.time() < deadline:  # wait until denoising has started
        seen += proc.stderr.read(1)  # unbuffered, so communicate() below misses nothing
    assert b"image 1/1" in seen, seen
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    leftovers = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
    assert leftovers == []
