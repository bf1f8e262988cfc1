"""--vae, --variant on the Hub, LCM sampling and the scheduler a model names: what the compat suite
(tests/compat) does not check row by row."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_checkpoint import vae_state_dict

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _gen(ldm, model, out, *extra):
    return ldm("generate", "a red circle", "--model", model, "--steps", "2", "--seed", "1", "--out", out, *extra)


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    from ldm_cli.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("other") / "other", seed=1)


@pytest.fixture(scope="module")
def vae_file(other_model, tmp_path_factory):
    """An A1111 .vae.safetensors (LDM names, first_stage_model. prefix as some releases keep it)."""
    from safetensors.torch import load_file, save_file

    config = json.loads((other_model / "vae" / "config.json").read_text())
    state = vae_state_dict(load_file(other_model / "vae" / "diffusion_pytorch_model.safetensors"), config)
    path = tmp_path_factory.mktemp("vae") / "other.vae.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _hub_cache(cache: Path, repo: str, files_from: Path) -> Path:
    folder = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(files_from, folder / "snapshots" / COMMIT)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    return cache


# --- --vae -------------------------------------------------------------------------------------------


def test_vae_is_recorded_in_the_a1111_line_and_the_json(ldm, tiny_model, vae_file, tmp_path):
    assert _gen(ldm, tiny_model, "own.png").code == 0
    result = _gen(ldm, tiny_model, "swapped.png", "--vae", vae_file)
    assert result.code == 0, result.stderr
    assert np.abs(_pixels(tmp_path / "own.png") - _pixels(tmp_path / "swapped.png")).max() > 1
    png = Image.open(tmp_path / "swapped.png")
    digest = _sha(vae_file)
    assert f"Model: {tiny_model}, VAE hash: {digest[:10]}, VAE: other.vae.safetensors," in png.text["parameters"]
    record = json.loads(png.text["ldm"])
    assert record["model"]["vae"] == {"spec": str(vae_file), "name": "other.vae.safetensors", "kind": "single-file",
                                      "hash": digest}
    assert record["model"]["hashes"]["vae"] == digest
    assert "VAE" not in Image.open(tmp_path / "own.png").text["parameters"]
    again = ldm("generate", "--from", tmp_path / "swapped.png", "--out", "again.png")  # --from keeps the VAE
    assert again.code == 0, again.stderr
    assert np.array_equal(_pixels(tmp_path / "again.png"), _pixels(tmp_path / "swapped.png"))


def test_vae_from_the_hub_cache_offline(ldm, tiny_model, other_model, tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = _hub_cache(tmp_path / "hub", "acme/tiny-vae", other_model / "vae")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert _gen(ldm, tiny_model, "hub.png", "--vae", "acme/tiny-vae", "--offline").code == 0
    assert _gen(ldm, tiny_model, "folder.png", "--vae", other_model / "vae").code == 0
    assert np.array_equal(_pixels(tmp_path / "hub.png"), _pixels(tmp_path / "folder.png"))
    text = Image.open(tmp_path / "hub.png").text["parameters"]
    assert "VAE: acme/tiny-vae" in text
    missing = _gen(ldm, tiny_model, "x.png", "--vae", "acme/no-such-vae", "--offline")
    assert missing.code == 1 and "--vae acme/no-such-vae: not in the Hugging Face cache" in missing.stderr


def test_what_is_not_a_vae_is_told_so(ldm, tiny_model, tmp_path):
    from safetensors.torch import save_file

    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2), "lora_unet_x.lora_up.weight": torch.zeros(2, 2)},
              str(lora))
    for value, needle in [(lora, "is a LoRA"), (tmp_path / "nope.safetensors", "no such folder or file")]:
        result = _gen(ldm, tiny_model, "x.png", "--vae", value)
        assert result.code == 1 and "ldm: error: --vae" in result.stderr and needle in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()


def test_encode_and_decode_take_vae(ldm, tiny_model, vae_file, tmp_path):
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "red.png")
    assert ldm("encode", "red.png", "--model", tiny_model, "--vae", vae_file, "-o", "a.latent.safetensors").code == 0
    assert ldm("encode", "red.png", "--model", tiny_model, "-o", "b.latent.safetensors").code == 0
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / f"{n}.latent.safetensors")["latents"] for n in "ab")
    assert (a - b).abs().max() > 1e-3
    result = ldm("decode", "a.latent.safetensors", "--model", tiny_model, "--vae", vae_file, "-o", "a.png")
    assert result.code == 0, result.stderr
    unfit = ldm("decode", "a.latent.safetensors", "--vae", vae_file, "-o", "b.png")  # SD1.5's VAE config: too small a file
    assert unfit.code == 1 and "tensor shapes do not fit" in unfit.stderr and "corrupt" not in unfit.stderr


# --- --variant on the Hub ------------------------------------------------------------------------------

OFFICIAL_FILES = [
    ".gitattributes", "README.md", "model_index.json", "feature_extractor/preprocessor_config.json",
    "safety_checker/config.json", "safety_checker/model.safetensors", "safety_checker/model.fp16.safetensors",
    "scheduler/scheduler_config.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "text_encoder/config.json",
    "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors", "text_encoder/pytorch_model.bin",
    "text_encoder/pytorch_model.fp16.bin", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.non_ema.safetensors",
    "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.bin", "unet/diffusion_pytorch_model.non_ema.bin",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.fp16.bin", "v1-5-pruned.safetensors",
    "v1-5-pruned-emaonly.safetensors", "v1-5-pruned.ckpt", "v1-5-pruned-emaonly.ckpt",
]
CONFIGS = {"model_index.json", "scheduler/scheduler_config.json", "tokenizer/merges.txt",
           "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
           "text_encoder/config.json", "unet/config.json", "vae/config.json"}


def _fetched(patterns) -> set[str]:
    from huggingface_hub.utils import filter_repo_objects  # what snapshot_download filters the repo's files with

    allow, ignore = patterns
    return set(filter_repo_objects(OFFICIAL_FILES, allow_patterns=allow, ignore_patterns=ignore or None))


def test_hub_downloads_only_the_weights_that_are_read():
    from ldm_cli.models.hub import WEIGHT_COMPONENTS, default_patterns, variant_patterns

    assert _fetched(default_patterns(WEIGHT_COMPONENTS, allow_pickle=False)) == CONFIGS | {
        "text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors"}
    assert _fetched(variant_patterns(WEIGHT_COMPONENTS, "fp16", allow_pickle=False)) == CONFIGS | {
        "text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors"}


def test_hub_fp16_only_repo_and_variant_offline(ldm, tiny_model, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from safetensors.torch import load_file, save_file

    fp16 = Path(shutil.copytree(tiny_model, tmp_path / "fp16"))
    for component, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")):
        plain = fp16 / component / f"{stem}.safetensors"
        save_file({k: v.half() for k, v in load_file(plain).items()}, str(fp16 / component / f"{stem}.fp16.safetensors"))
        plain.unlink()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(_hub_cache(tmp_path / "hub", "acme/fp16-sd", fp16)))
    assert _gen(ldm, "acme/fp16-sd", "a.png", "--offline").code == 0
    assert _gen(ldm, "acme/fp16-sd", "b.png", "--offline", "--variant", "fp16").code == 0
    assert _gen(ldm, fp16, "c.png", "--variant", "fp16").code == 0
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "c.png"))
    assert np.array_equal(_pixels(tmp_path / "b.png"), _pixels(tmp_path / "c.png"))


def test_variant_value_is_checked_before_loading(ldm, tiny_model, tmp_path):
    result = _gen(ldm, tiny_model, "x.png", "--variant", "../fp16")
    assert result.code == 2 and "--variant '../fp16'" in result.stderr
    (tmp_path / "model.safetensors").write_bytes(b"")
    single = _gen(ldm, tmp_path / "model.safetensors", "x.png", "--variant", "fp16")
    assert single.code == 1 and "single file, which has no variants" in single.stderr


# --- LCM and the model's own scheduler -------------------------------------------------------------


@pytest.fixture(scope="module")
def lcm_model(consistency_model):
    return consistency_model("LCMScheduler")


def test_lcm_matches_latent_consistency_pipeline(lcm_model):
    from ldm_cli.models.loading import load_components, resolve_source
    from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
    from ldm_cli.reference import lcm_reference_pipeline

    components = load_components(resolve_source(str(lcm_model)))
    images = {}
    for guidance in (7.5, 2.0):
        ref = lcm_reference_pipeline(components)(
            "a cat", num_inference_steps=4, guidance_scale=guidance, generator=torch.Generator().manual_seed(3),
            output_type="np", height=64, width=64).images[0]
        mine = TextToImage(components, "cpu", torch.float32).generate("a cat", 3, SamplingPlan(64, 64, 4, guidance, "lcm"))
        images[guidance] = mine.image[0].permute(1, 2, 0).numpy()
        assert np.abs(ref - images[guidance]).max() <= 1e-4
    assert np.abs(images[7.5] - images[2.0]).max() > 1e-3  # the guidance embedding reaches the UNet


def test_lcm_model_defaults_to_lcm_and_runs_no_cfg_pass(ldm, lcm_model, tmp_path):
    result = _gen(ldm, lcm_model, "a.png", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["scheduler"] == "lcm"
    assert "Sampler: LCM" in Image.open(tmp_path / "a.png").text["parameters"]
    plan = ldm("generate", "a cat", "--model", lcm_model, "--dry-run", "--json")
    assert json.loads(plan.stdout)["unet_batch"] == 1 and json.loads(plan.stdout)["scheduler"] == "lcm"


def test_a_scheduler_ldm_has_no_sampler_for_is_a_clear_error(ldm, tiny_model, tmp_path):
    folder = Path(shutil.copytree(tiny_model, tmp_path / "deis"))
    config_path = folder / "scheduler" / "scheduler_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "_class_name": "DEISMultistepScheduler"}))
    result = _gen(ldm, folder, "x.png")
    assert result.code == 1 and "DEISMultistepScheduler" in result.stderr and "--scheduler" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("ldm: error:") and not (tmp_path / "x.png").exists()
    assert _gen(ldm, folder, "y.png", "--scheduler", "ddim").code == 0


def test_lcm_without_g_uses_the_guidance_that_suits_it(ldm, lcm_model, tiny_model, tmp_path):
    # An LCM-distilled UNet: diffusers' LatentConsistencyModelPipeline default, 8.5, as the embedding.
    assert _gen(ldm, lcm_model, "d.png").code == 0
    assert json.loads(Image.open(tmp_path / "d.png").text["ldm"])["settings"]["guidance"] == 8.5
    assert "CFG scale: 8.5" in Image.open(tmp_path / "d.png").text["parameters"]
    assert _gen(ldm, lcm_model, "d2.png", "--g", "8.5").code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), np.asarray(Image.open(tmp_path / "d2.png")))
    # A plain UNet sampled with lcm (an LCM-LoRA's case): 1.0, no unconditional pass.
    assert _gen(ldm, tiny_model, "p.png", "--scheduler", "lcm").code == 0
    assert json.loads(Image.open(tmp_path / "p.png").text["ldm"])["settings"]["guidance"] == 1.0
    plan = json.loads(ldm("generate", "a cat", "--model", tiny_model, "--scheduler", "lcm", "--dry-run", "--json").stdout)
    assert plan["guidance"] == 1.0 and plan["unet_batch"] == 1
    # An explicit --g wins, and other samplers keep 7.5; --from replays the recorded guidance.
    assert _gen(ldm, tiny_model, "g.png", "--scheduler", "lcm", "--g", "2").code == 0
    assert json.loads(Image.open(tmp_path / "g.png").text["ldm"])["settings"]["guidance"] == 2.0
    assert _gen(ldm, tiny_model, "e.png", "--scheduler", "euler").code == 0
    assert json.loads(Image.open(tmp_path / "e.png").text["ldm"])["settings"]["guidance"] == 7.5
    assert ldm("generate", "--from", "g.png", "--out", "g2.png").code == 0
    assert json.loads(Image.open(tmp_path / "g2.png").text["ldm"])["settings"]["guidance"] == 2.0
