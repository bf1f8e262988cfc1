"""Every LoRA-family layout of cases_lora.CASES, built with random weights and real key names on the
tiny model: ldm's picture equals its oracle's on the same seed (max difference <= 1/255), or ldm
refuses it with one clear line (exit 1/2, no "internal error", no "damaged")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ldm_cli.pipeline.loop.schedulers import build_scheduler

from .cases_lora import CASES, SAME
from .lora_builders import BUILDERS, Built, pipeline

PROMPT, SEED, STEPS = "a red circle", 5, 3
ARGS = ("--steps", str(STEPS), "--seed", str(SEED), "--scheduler", "ddim")


def _oracle_pixels(pipe) -> np.ndarray:
    pipe.scheduler = build_scheduler("ddim", dict(pipe.scheduler.config))
    out = pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=7.5, generator=torch.Generator().manual_seed(SEED),
               output_type="np", height=64, width=64)
    return out.images[0]


def _diffusers_pixels(tiny, path, **kwargs) -> np.ndarray:
    pipe = pipeline(tiny)
    pipe.load_lora_weights(str(path), **({"unet_config": pipe.unet.config} if kwargs.get("unet_config") else {}))
    return _oracle_pixels(pipe)


def _ldm_pixels(ldm, tiny, tmp_path, *extra) -> np.ndarray:
    out = tmp_path / f"ldm-{len(list(tmp_path.glob('ldm-*.png')))}.png"
    result = ldm("generate", PROMPT, "--model", tiny, *ARGS, *extra, "--out", out)
    assert result.code == 0, result.stderr
    return np.asarray(Image.open(out)).astype(np.float64) / 255


@pytest.fixture(scope="module")
def base_pixels(tiny_model, tmp_path_factory):
    return _oracle_pixels(pipeline(tiny_model))


def _finetuned(ldm, tiny, folder, fmt) -> Built:
    data = folder / "data"
    data.mkdir(exist_ok=True)
    for i, (color, shape) in enumerate([("red", "circle"), ("blue", "square")]):
        image = Image.new("RGB", (64, 64), "white")
        (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)((12, 12, 52, 52), fill=color)
        image.save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(f"a {color} {shape}")
    result = ldm("finetune", data, "--model", tiny, "-o", folder / fmt, "--max-steps", "2", "--lr", "3e-2", "--rank", "4",
                 "--alpha", "8", "--train-text-encoder", "--lora-format", fmt, "--batch-size", "2",
                 "--validation-steps", "1", "--validation-prompt", "a red circle")
    assert result.code == 0, result.stderr
    return Built(folder / fmt / f"{fmt}.safetensors", "diffusers")


def _build(case, ldm, tiny, folder) -> Built:
    if case["name"].startswith("ldm finetune"):
        return _finetuned(ldm, tiny, folder, "kohya" if "kohya" in case["name"] else "diffusers")
    return BUILDERS[case["name"]](tiny, folder)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_layout(case, ldm, tiny_model, tmp_path, base_pixels):
    built = _build(case, ldm, tiny_model, tmp_path)
    if case["ldm"].startswith("refused"):
        assert built.oracle == "refused"
        result = ldm("generate", PROMPT, "--model", tiny_model, *ARGS, "--lora", built.path, "--out", "x.png")
        lines = [line for line in result.stderr.splitlines() if line.startswith("ldm:") or "Traceback" in line]
        assert result.code in (1, 2) and len(lines) == 1 and lines[0].startswith("ldm: error:"), result.stderr
        assert "internal error" not in result.stderr and "damaged" not in result.stderr
        gist = case["ldm"].split(": ", 1)[1].split(";")
        assert gist[0] in lines[0] and gist[1].strip() in lines[0]  # the gist the table shows
        assert not (tmp_path / "x.png").exists()
        return
    mine = _ldm_pixels(ldm, tiny_model, tmp_path, "--lora", built.path)
    if built.oracle == "diffusers":
        assert case["diffusers"] == "loads" and case["ldm"] == SAME
        reference = _diffusers_pixels(tiny_model, built.path)
    elif built.oracle == "diffusers-unet-config":
        reference = _diffusers_pixels(tiny_model, built.path, unet_config=True)
    elif built.oracle == "equivalent":
        reference = _diffusers_pixels(tiny_model, built.equivalent)
    else:
        reference = _oracle_pixels(built.pipe())
    assert np.abs(reference - base_pixels).max() > 0.05  # the adapter really changes the picture
    assert np.abs(mine - reference).max() <= 1 / 255 + 1e-6
