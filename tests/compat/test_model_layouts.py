"""The compatibility suite for model layouts: every row of cases_models.CASES is built (tiny random
weights, real key names and folder layouts) and checked against diffusers on the same files.

- ldm "loads": exit 0, and the PNG equals diffusers' pipeline output within 1/255 per channel;
- ldm "refused: ...": one `ldm: error:` line naming the problem (no traceback, no "internal error"),
  non-zero exit, nothing written;
- the diffusers column is measured too: "loads"/"refuses" is what diffusers does with these files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from . import model_layouts as L
from .cases_models import CASES

PROMPT, STEPS, SEED, GUIDANCE, SIZE = "a red circle", 2, 1, 7.5, 64


def _folder(path: Path, **kwargs):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        path, safety_checker=None, feature_extractor=None, requires_safety_checker=False, torch_dtype=torch.float32,
        local_files_only=True, **kwargs,
    )


def _single(ctx, path: Path, **kwargs):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_single_file(
        str(path), config=str(ctx.cfg), local_files_only=True, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, torch_dtype=torch.float32, **kwargs,
    )


def _lcm(path: Path):
    from diffusers import LatentConsistencyModelPipeline

    return LatentConsistencyModelPipeline.from_pretrained(
        path, safety_checker=None, feature_extractor=None, requires_safety_checker=False, local_files_only=True,
    )


def _vae_folder(path: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(path)


def _vae_file(ctx, path: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_single_file(str(path), config=str(ctx.base), subfolder="vae", local_files_only=True)


@dataclass(frozen=True)
class Run:
    build: Callable  # ctx -> the --model path
    args: Callable = lambda ctx: [[]]  # ctx -> one list of extra ldm flags per ldm run
    diffusers: Callable | None = None  # (ctx, model) -> diffusers' pipeline on the same files; None: n/a
    oracle: Callable | None = None  # ctx -> the pipeline to compare with where diffusers refuses the file
    refusal: tuple[str, ...] = ()  # what ldm's error line must say


def _cfg(*extra):
    return lambda ctx: [["--config", str(ctx.cfg), *(e(ctx) if callable(e) else e for e in extra)]]


RUNS = {
    "diffusers folder": Run(L.diffusers_folder, diffusers=lambda c, p: _folder(p)),
    "tokenizer.json-only tokenizer": Run(L.tokenizer_json_only, diffusers=lambda c, p: _folder(p)),
    "fp16 variant only": Run(L.fp16_only, args=lambda c: [[], ["--variant", "fp16"]],
                             diffusers=lambda c, p: _folder(p, variant="fp16")),
    "fp16 + fp32": Run(L.fp16_and_fp32, diffusers=lambda c, p: _folder(p)),
    "fp16 + fp32, --variant fp16": Run(L.fp16_and_fp32, args=lambda c: [["--variant", "fp16"]],
                                       diffusers=lambda c, p: _folder(p, variant="fp16")),
    "sharded UNet": Run(L.sharded_unet, diffusers=lambda c, p: _folder(p)),
    "official repo clone": Run(L.official_clone, diffusers=lambda c, p: _folder(p)),
    "pickle-only UNet": Run(L.pickle_only, diffusers=lambda c, p: _folder(p), refusal=("pickle", "--allow-pickle")),
    "pickle-only UNet, --allow-pickle": Run(L.pickle_only, args=lambda c: [["--allow-pickle"]],
                                            diffusers=lambda c, p: _folder(p)),
    "LCM folder": Run(L.lcm_folder, diffusers=lambda c, p: _lcm(p)),
    "SD2-like folder": Run(L.sd2_folder, diffusers=lambda c, p: _folder(p), refusal=("Stable Diffusion 2", "SD1")),
    "single file SD1": Run(L.single_file, args=_cfg(), diffusers=lambda c, p: _single(c, p)),
    "single file .ckpt": Run(L.single_ckpt, args=_cfg(), diffusers=lambda c, p: _single(c, p),
                             refusal=("pickle", "--allow-pickle")),
    "single file .ckpt, --allow-pickle": Run(L.single_ckpt, args=_cfg("--allow-pickle"),
                                             diffusers=lambda c, p: _single(c, p)),
    "single file, old CLIP names": Run(L.single_old_clip_names, args=_cfg(), diffusers=lambda c, p: _single(c, p),
                                       oracle=lambda c: _single(c, c.single)),
    "single file without VAE": Run(L.single_without_vae, args=_cfg(), diffusers=lambda c, p: _single(c, p),
                                   refusal=("no VAE", "--vae")),
    "single file without VAE, --vae": Run(
        L.single_without_vae, args=_cfg("--vae", lambda c: str(c.get(L.other_vae_folder))),
        diffusers=lambda c, p: _single(c, p, vae=_vae_folder(c.get(L.other_vae_folder))),
    ),
    "single file with model_ema": Run(L.single_with_ema, args=_cfg(), diffusers=lambda c, p: _single(c, p)),
    "single file with model_ema, --ema": Run(L.single_with_ema, args=_cfg("--ema"),
                                             diffusers=lambda c, p: _single(c, p, extract_ema=True)),
    "SD2-like single file": Run(L.sd2_single_file, refusal=("Stable Diffusion 2", "SD1")),
    "SDXL single file": Run(L.sdxl_single_file, refusal=("SDXL", "SD1")),
    "VAE file as --model": Run(L.vae_single_file, refusal=("is a VAE", "--vae")),
    "VAE file as --vae": Run(L.diffusers_folder, args=lambda c: [["--vae", str(c.get(L.vae_single_file))]],
                             diffusers=lambda c, p: _folder(p, vae=_vae_file(c, c.get(L.vae_single_file)))),
    "VAE folder as --vae": Run(L.diffusers_folder, args=lambda c: [["--vae", str(c.get(L.other_vae_folder))]],
                               diffusers=lambda c, p: _folder(p, vae=_vae_folder(c.get(L.other_vae_folder)))),
    "LoRA file as --model": Run(L.lora_file, refusal=("is a LoRA", "--lora")),
}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return L.make_context(tmp_path_factory.mktemp("compat"))


def _render(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    out = pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=SIZE, width=SIZE,
               generator=torch.Generator().manual_seed(SEED), output_type="np")
    return (np.clip(out.images[0], 0, 1) * 255).round().astype(np.int16)


def _generate(ldm, model, out, *args):
    return ldm("generate", PROMPT, "--model", model, "--steps", STEPS, "--seed", SEED, "--guidance", GUIDANCE,
               "--out", out, *args)


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def _try(load):
    try:
        return load(), None
    except Exception as exc:  # diffusers raises many kinds for a file it cannot use
        return None, exc


def test_every_case_has_a_run():
    assert sorted(c["name"] for c in CASES) == sorted(RUNS)
    for case in CASES:
        assert case["ldm"].startswith(("loads", "refused: ")) and case["diffusers"] in ("loads", "refuses", "n/a")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_layout(case, ctx, ldm, tmp_path):
    run = RUNS[case["name"]]
    model = ctx.get(run.build)
    pipe = None
    if case["diffusers"] == "n/a":
        assert run.diffusers is None
    else:
        pipe, error = _try(lambda: run.diffusers(ctx, model))
        assert (pipe is not None) == (case["diffusers"] == "loads"), f"diffusers: {error!r}"
    for number, args in enumerate(run.args(ctx)):
        out = tmp_path / f"out{number}.png"
        result = _generate(ldm, model, out, *args)
        if case["ldm"].startswith("refused"):
            _check_refusal(result, run.refusal, out)
            continue
        assert result.code == 0, result.stderr
        reference = _render(pipe if pipe is not None else run.oracle(ctx))
        assert np.abs(_pixels(out) - reference).max() <= 1, f"{case['name']} {args}"


def _check_refusal(result, needles, out: Path) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("ldm: error:")]
    assert result.code in (1, 2), result.stderr
    assert len(errors) == 1 and result.stderr.rstrip("\n").splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not out.exists()


# --- the layouts can tell a wrong file from the right one ------------------------------------------


def _record(path: Path) -> dict:
    return json.loads(Image.open(path).text["ldm"])


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_official_clone_reads_and_hashes_only_the_default_files(ctx, ldm, tmp_path):
    folder = ctx.get(L.official_clone)
    assert _generate(ldm, folder, "a.png").code == 0
    hashes = _record(tmp_path / "a.png")["model"]["hashes"]
    assert hashes == {
        "unet": _sha(folder / "unet" / "diffusion_pytorch_model.safetensors"),
        "vae": _sha(folder / "vae" / "diffusion_pytorch_model.safetensors"),
        "text_encoder": _sha(folder / "text_encoder" / "model.safetensors"),
    }
    assert f"Model hash: {hashes['unet'][:10]}," in Image.open(tmp_path / "a.png").text["parameters"]


def test_variant_fp16_reads_and_hashes_the_fp16_files(ctx, ldm, tmp_path):
    folder = ctx.get(L.fp16_and_fp32)
    assert _generate(ldm, folder, "default.png").code == 0
    assert _generate(ldm, folder, "fp16.png", "--variant", "fp16").code == 0
    assert np.abs(_pixels(tmp_path / "default.png") - _pixels(tmp_path / "fp16.png")).max() > 1  # other weights
    record = _record(tmp_path / "fp16.png")["model"]
    assert record["hashes"]["unet"] == _sha(folder / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    assert record["variant"] == "fp16" and "variant" not in _record(tmp_path / "default.png")["model"]
    assert ldm("generate", "--from", tmp_path / "fp16.png", "--out", "again.png").code == 0  # --from keeps it
    assert np.array_equal(_pixels(tmp_path / "again.png"), _pixels(tmp_path / "fp16.png"))
    missing = _generate(ldm, ctx.base, "x.png", "--variant", "bf16")
    assert missing.code == 1 and "--variant bf16" in missing.stderr and "no bf16 weights" in missing.stderr


def test_sharded_unet_hash_covers_its_shards(ctx, ldm, tmp_path):
    folder = ctx.get(L.sharded_unet)
    assert _generate(ldm, folder, "a.png").code == 0
    index = json.loads((folder / "unet" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    expected = hashlib.sha256("".join(_sha(folder / "unet" / s) for s in shards).encode()).hexdigest()
    assert _record(tmp_path / "a.png")["model"]["hashes"]["unet"] == expected


def test_ema_weights_are_used_only_when_asked(ctx, ldm, tmp_path):
    path = ctx.get(L.single_with_ema)
    assert _generate(ldm, path, "normal.png", "--config", ctx.cfg).code == 0
    assert _generate(ldm, path, "ema.png", "--config", ctx.cfg, "--ema").code == 0
    assert np.abs(_pixels(tmp_path / "normal.png") - _pixels(tmp_path / "ema.png")).max() > 1
    assert _record(tmp_path / "ema.png")["model"]["ema"] is True
    again = ldm("generate", "--from", tmp_path / "ema.png", "--config", ctx.cfg, "--out", "again.png")
    assert again.code == 0 and np.array_equal(_pixels(tmp_path / "again.png"), _pixels(tmp_path / "ema.png"))
    no_ema = _generate(ldm, ctx.single, "x.png", "--config", ctx.cfg, "--ema")
    assert no_ema.code == 1 and "no EMA copy" in no_ema.stderr
    folder = _generate(ldm, ctx.base, "y.png", "--ema")
    assert folder.code == 1 and "--ema" in folder.stderr
