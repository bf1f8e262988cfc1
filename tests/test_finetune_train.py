"""`ldm finetune` on a tiny real model and a tiny generated data set (64 px, a few steps).

The loss falls (measured on fixed noise), resume continues exactly, NaN stops the run keeping
the last good checkpoint, outputs load in ldm and diffusers, the run files are written.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

SHAPES = [("red", "circle"), ("blue", "square"), ("green", "circle"), ("orange", "square")]


def make_shapes(root):
    root.mkdir(parents=True, exist_ok=True)
    for i, (color, shape) in enumerate(SHAPES):
        image = Image.new("RGB", (64, 64), "white")
        draw = ImageDraw.Draw(image)
        (draw.ellipse if shape == "circle" else draw.rectangle)((12, 12, 52, 52), fill=color)
        image.save(root / f"{i}.png")
        (root / f"{i}.txt").write_text(f"a {color} {shape}")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes") / "data")


def _log(run):
    with open(run / "train-log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _eval_loss(model_folder, data, unet) -> float:
    """Mean DDPM loss over the data set for fixed noise and timesteps: comparable across weights."""
    from diffusers import DDPMScheduler

    from ldm_cli.models.loading import load_components, resolve_source
    from ldm_cli.training.cache import TensorCache
    from ldm_cli.training.data import scan
    from ldm_cli.training.inputs import Captions, Latents
    from ldm_cli.training.objective import diffusion_loss

    c = load_components(resolve_source(str(model_folder)))
    items = scan(data, 64).items
    cache = TensorCache(data.parent / "eval-cache")
    latents = Latents(items, c.vae, "eval", "center", False, cache)
    latents.precompute()
    captions = Captions(c.tokenizer, c.text_encoder, "eval", False, cache)
    captions.precompute(i.caption for i in items)
    x0 = torch.stack([latents.memory[(i, False)] for i in range(len(items))])
    text = torch.stack([captions.memory[i.caption] for i in items])
    scheduler = DDPMScheduler.from_config(c.scheduler_config)
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        return float(np.mean([diffusion_loss(unet, scheduler, x0, text, generator).item() for _ in range(6)]))


def test_full_finetune_lowers_the_loss_and_loads_everywhere(ldm, tiny_model, shapes, tmp_path):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    result = ldm("finetune", shapes, "--model", tiny_model, "-o", "full", "--method", "full", "--max-steps", "12",
                 "--batch-size", "4", "--lr", "3e-3", "--ema-decay", "0.5", "--checkpoint-every", "100",
                 "--validate-every", "6", "--validation-prompt", "a red circle", "--validation-steps", "2")
    assert result.code == 0, result.stderr
    out = tmp_path / "full"
    before = _eval_loss(tiny_model, shapes, UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet"))
    after = _eval_loss(tiny_model, shapes, UNet2DConditionModel.from_pretrained(out, subfolder="unet"))
    assert after < 0.6 * before, (before, after)  # a measured drop, not just "it ran"
    # The output is a diffusers folder: diffusers and `ldm generate --model OUT` both load it.
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.config.sample_size == 8
    # The text encoder has the canonical text_model.* keys, so transformers 4 loads it too (5 reads both).
    from safetensors.torch import load_file

    text_keys = list(load_file(out / "text_encoder" / "model.safetensors"))
    assert text_keys and all(k.startswith("text_model.") for k in text_keys), text_keys[:3]
    generated = ldm("generate", "a red circle", "--model", out, "--steps", "2", "--seed", "1", "--out", "g.png")
    assert generated.code == 0, generated.stderr
    # Beside it: the run's full configuration, the data summary, the logs and the validation grids.
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["steps"] == 12 and run["settings"]["method"] == "full"
    assert run["data"]["images_used"] == 4 and json.loads((out / "data-report.json").read_text())["images_used"] == 4
    rows = _log(out)
    assert [int(r["step"]) for r in rows] == list(range(1, 13)) and all(float(r["lr"]) == 3e-3 for r in rows)
    grids = sorted(p.name for p in (out / "validation").glob("*.png"))
    assert grids == ["step-000006.png", "step-000012.png"]
    assert Image.open(out / "validation" / grids[0]).size == (128, 64)  # 1 prompt x 2 seeds


RESUME_ARGS = ("--batch-size", "1", "--grad-accum", "2", "--flip", "--caption-dropout", "0.5", "--rank", "4",
               "--alpha", "2", "--lr", "1e-3", "--seed", "5", "--checkpoint-every", "1", "--keep", "2",
               "--validation-steps", "1")


def test_resume_continues_exactly(ldm, tiny_model, shapes, tmp_path):
    from safetensors.torch import load_file

    from ldm_cli.training.checkpoints import latest_checkpoint, list_checkpoints

    whole = ldm("finetune", shapes, "--model", tiny_model, "-o", "whole", "--max-steps", "4", *RESUME_ARGS)
    assert whole.code == 0, whole.stderr
    first = ldm("finetune", shapes, "--model", tiny_model, "-o", "split", "--max-steps", "2", *RESUME_ARGS)
    assert first.code == 0, first.stderr
    again = ldm("finetune", shapes, "--model", tiny_model, "-o", "split", "--max-steps", "4", *RESUME_ARGS)
    assert again.code == 2 and "--resume latest" in again.stderr  # never silently over an existing run
    # An incomplete checkpoint (no state.json, or still a temp folder) is never picked as latest.
    (tmp_path / "split" / "checkpoints" / "checkpoint-000009").mkdir()
    (tmp_path / "split" / "checkpoints" / ".tmp-checkpoint-000010-1").mkdir()
    assert latest_checkpoint(tmp_path / "split").name == "checkpoint-000002"
    resumed = ldm("finetune", shapes, "--model", tiny_model, "-o", "split", "--max-steps", "4", "--resume", "latest", *RESUME_ARGS)
    assert resumed.code == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "checkpoint-000002" in resumed.stderr
    whole_log, split_log = _log(tmp_path / "whole"), _log(tmp_path / "split")
    assert [r["step"] for r in split_log] == ["1", "2", "3", "4"]
    assert [r["loss"] for r in split_log] == [r["loss"] for r in whole_log]  # same next-step losses, exactly
    a = load_file(str(tmp_path / "whole" / "whole.safetensors"))
    b = load_file(str(tmp_path / "split" / "split.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in list_checkpoints(tmp_path / "whole")] == ["checkpoint-000003", "checkpoint-000004"]  # --keep 2


def test_resume_refuses_a_bad_checkpoint_or_other_settings(ldm, tiny_model, shapes, tmp_path):
    first = ldm("finetune", shapes, "--model", tiny_model, "-o", "r", "--max-steps", "1", "--rank", "4",
                "--validation-steps", "1")
    assert first.code == 0, first.stderr
    checkpoint = tmp_path / "r" / "checkpoints" / "checkpoint-000001"
    other = ldm("finetune", shapes, "--model", tiny_model, "-o", "r", "--max-steps", "2", "--rank", "8", "--resume", checkpoint)
    assert other.code == 2 and "--rank" in other.stderr
    (checkpoint / "trainable.safetensors").write_bytes(b"garbage")
    broken = ldm("finetune", shapes, "--model", tiny_model, "-o", "r", "--max-steps", "2", "--rank", "4", "--resume", checkpoint)
    assert broken.code == 1 and "unreadable" in broken.stderr and "Traceback" not in broken.stderr


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(ldm, tiny_model, shapes, tmp_path):
    result = ldm("finetune", shapes, "--model", tiny_model, "-o", "nan", "--method", "full", "--lr", "1e30",
                 "--max-grad-norm", "1e30", "--max-steps", "5", "--checkpoint-every", "1", "--caption-dropout", "0")
    assert result.code == 1, result.stderr
    assert "the loss became nan" in result.stderr.lower() or "the loss became inf" in result.stderr.lower()
    assert "last good checkpoint" in result.stderr and "Traceback" not in result.stderr
    out = tmp_path / "nan"
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept and all((out / "checkpoints" / k / "state.json").is_file() for k in kept)
    state = json.loads((out / "checkpoints" / kept[-1] / "state.json").read_text())
    assert np.isfinite(state["loss"])
    assert not (out / "model_index.json").exists()  # no exported model from a diverged run


def test_bf16_mixed_precision_gradient_checkpointing_and_text_encoder_lora(ldm, tiny_model, shapes, tmp_path):
    """The engine options that run on a CPU too: accelerate's bf16 autocast, gradient checkpointing,
    and LoRA on the text encoder as well; the LoRA still loads in `ldm generate`."""
    import subprocess
    import sys

    # A fresh process: accelerate's state is a per-process singleton, and other tests in this process
    # already fixed its mixed precision.
    cmd = [sys.executable, "-m", "ldm_cli", "finetune", str(shapes), "--model", str(tiny_model), "-o", "bf16",
           "--max-steps", "3", "--batch-size", "2", "--mixed-precision", "bf16", "--gradient-checkpointing",
           "--train-text-encoder", "--rank", "4", "--crop", "random", "--validation-steps", "1"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "bf16"
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["settings"]["mixed_precision"] == "bf16"
    assert run["settings"]["gradient_checkpointing"] and run["settings"]["train_text_encoder"]
    losses = [float(r["loss"]) for r in _log(out)]
    assert len(losses) == 3 and all(np.isfinite(losses))
    from safetensors.torch import load_file

    keys = load_file(out / "bf16.safetensors").keys()
    assert any(k.startswith("unet.") for k in keys) and any(k.startswith("text_encoder.") for k in keys)
    generated = ldm("generate", "a red circle", "--model", tiny_model, "--lora", out / "bf16.safetensors",
                    "--steps", "2", "--seed", "1", "--out", "g.png")
    assert generated.code == 0, generated.stderr
