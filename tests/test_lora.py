"""LoRA files: what `ldm finetune` writes loads identically in ldm (merge) and in diffusers (peft)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_cli.training.methods import TEXT_TARGETS, UNET_TARGETS, add_lora, lora_state, save_lora


def _load(folder):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    return (UNet2DConditionModel.from_pretrained(folder, subfolder="unet"),
            CLIPTextModel.from_pretrained(folder, subfolder="text_encoder"))


def _randomised_lora(tiny_model, rank=4, alpha=8.0):
    """A peft-adapted UNet + text encoder with non-zero B (as if trained)."""
    unet, text_encoder = _load(tiny_model)
    torch.manual_seed(0)
    add_lora(unet, rank, alpha, UNET_TARGETS)
    add_lora(text_encoder, rank, alpha, TEXT_TARGETS)
    with torch.no_grad():
        for model in (unet, text_encoder):
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.2)
    return unet, text_encoder


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 4, 8, 8, generator=g), torch.tensor([500]), torch.randint(0, 49000, (1, 77), generator=g)


def _forward(unet, text_encoder):
    x, t, ids = _inputs()
    with torch.no_grad():
        return unet(x, t, text_encoder(ids)[0]).sample


@pytest.fixture(scope="module")
def lora_files(tiny_model, tmp_path_factory):
    unet, text_encoder = _randomised_lora(tiny_model)
    expected = _forward(unet, text_encoder)
    folder = tmp_path_factory.mktemp("loras")
    files = {}
    for fmt in ("diffusers", "kohya"):
        tensors = lora_state(unet, text_encoder, rank=4, alpha=8.0, kohya=fmt == "kohya")
        files[fmt] = save_lora(folder / f"{fmt}.safetensors", tensors, {"ldm.format": fmt})
    return expected, files


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_ldm_merge_equals_the_trained_adapters(tiny_model, lora_files, fmt):
    from ldm_cli.models.lora import LoraSpec, apply_loras

    expected, files = lora_files
    unet, text_encoder = _load(tiny_model)
    base = _forward(unet, text_encoder)
    apply_loras(unet, text_encoder, [LoraSpec(files[fmt], 1.0)])
    merged = _forward(unet, text_encoder)
    assert (expected - base).abs().max() > 1e-2  # the LoRA really changes the output
    torch.testing.assert_close(merged, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_diffusers_load_lora_weights_reads_our_files(tiny_model, lora_files, fmt):
    from diffusers import StableDiffusionPipeline

    expected, files = lora_files
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(files[fmt]))
    torch.testing.assert_close(_forward(pipe.unet, pipe.text_encoder), expected, atol=1e-4, rtol=1e-4)


def test_scale_is_linear_and_repeatable(tiny_model, lora_files):
    from ldm_cli.models.lora import apply_loras, parse_lora_arg

    _, files = lora_files
    unet, text_encoder = _load(tiny_model)
    base = _forward(unet, text_encoder)
    apply_loras(unet, text_encoder, [parse_lora_arg(f"{files['diffusers']}:0.5"), parse_lora_arg(f"{files['kohya']}:0.5")])
    both_half = _forward(unet, text_encoder)
    unet, text_encoder = _load(tiny_model)
    apply_loras(unet, text_encoder, [parse_lora_arg(str(files["diffusers"]))])
    torch.testing.assert_close(both_half, _forward(unet, text_encoder), atol=1e-4, rtol=1e-4)
    assert (both_half - base).abs().max() > 1e-2


def test_generate_with_lora_flag(ldm, tiny_model, lora_files, tmp_path):
    _, files = lora_files
    args = ("generate", "a red circle", "--model", tiny_model, "--steps", "2", "--seed", "3")
    assert ldm(*args, "--out", "base.png").code == 0
    assert ldm(*args, "--lora", f"{files['diffusers']}:0", "--out", "zero.png").code == 0
    result = ldm(*args, "--lora", str(files["kohya"]), "--lora", f"{files['diffusers']}:0.3", "--out", "two.png")
    assert result.code == 0, result.stderr
    pixels = {n: np.asarray(Image.open(tmp_path / f"{n}.png")).astype(int) for n in ("base", "zero", "two")}
    assert np.array_equal(pixels["base"], pixels["zero"])
    assert np.abs(pixels["two"] - pixels["base"]).max() > 0
    record = json.loads(Image.open(tmp_path / "two.png").text["ldm"])
    assert record["settings"]["loras"] == [f"{files['kohya']}:1", f"{files['diffusers']}:0.3"]


def test_bad_lora_arguments(ldm, tiny_model, tmp_path):
    missing = ldm("generate", "x", "--model", tiny_model, "--lora", "nope.safetensors:0.5")
    assert missing.code == 2 and "--lora nope.safetensors:0.5: no such file" in missing.stderr
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    junk = ldm("generate", "x", "--model", tiny_model, "--steps", "1", "--lora", "junk.safetensors")
    assert junk.code == 1 and "not a readable .safetensors file" in junk.stderr and "Traceback" not in junk.stderr
    from safetensors.torch import save_file

    save_file({"lora_unet_no_such_module.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_no_such_module.lora_up.weight": torch.zeros(4, 2)}, str(tmp_path / "other.safetensors"))
    other = ldm("generate", "x", "--model", tiny_model, "--steps", "1", "--lora", "other.safetensors")
    assert other.code == 1 and "not in this model" in other.stderr


@pytest.mark.parametrize("kohya_format", [True, False])
def test_written_text_encoder_names_are_the_canonical_ones(tiny_model, kohya_format):
    unet, text_encoder = _load(tiny_model)
    add_lora(unet, 4, 4.0, UNET_TARGETS)
    add_lora(text_encoder, 4, 4.0, TEXT_TARGETS)
    keys = [k for k in lora_state(unet, text_encoder, 4, 4.0, kohya=kohya_format) if "te_" in k or "text_encoder" in k]
    canonical = "lora_te_text_model_encoder_layers_" if kohya_format else "text_encoder.text_model.encoder.layers."
    assert len(keys) == (3 if kohya_format else 2) * 4 * 2 and all(k.startswith(canonical) for k in keys), keys[:3]


def test_shipped_demo_text_encoder_has_canonical_keys_and_loads_exactly():
    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    from ldm_cli.models.loading import ASSETS

    folder = ASSETS / "demo" / "text_encoder"
    stored = load_file(folder / "model.safetensors")
    assert stored and all(k.startswith("text_model.") for k in stored)
    model, info = CLIPTextModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    state = model.state_dict()
    for key, value in stored.items():
        name = key if key in state else key.removeprefix("text_model.")
        assert torch.equal(state[name], value), key
