"""LoRA-family files: canonical names in what ldm writes, every spelling read, `describe_lora`, DoRA's
norm axis, and one clear line for files ldm cannot use (pixel parity lives in tests/compat)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from compat.lora_builders import BUILDERS, kohya, loha, sd2, sdxl
from ldm_cli.errors import ModelError
from ldm_cli.models.lora import LoraSpec, apply_loras, describe_lora
from ldm_cli.models.lycoris import decompose


def _models(tiny):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    return (UNet2DConditionModel.from_pretrained(tiny, subfolder="unet"),
            CLIPTextModel.from_pretrained(tiny, subfolder="text_encoder"))


def _forward(unet, text_encoder):
    g = torch.Generator().manual_seed(1)
    x, ids = torch.randn(1, 4, 8, 8, generator=g), torch.randint(0, 49000, (1, 77), generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([500]), text_encoder(ids)[0]).sample


def test_old_ldm_files_without_text_model_still_apply(tiny_model, tmp_path):
    """ldm used to write lora_te_encoder_layers_*: read it as the canonical spelling."""
    canonical = kohya(tiny_model, tmp_path).path
    tensors = load_file(canonical)
    old = {k.replace("lora_te_text_model_", "lora_te_"): v for k, v in tensors.items()}
    save_file(old, str(tmp_path / "old.safetensors"))
    results = []
    for path in (canonical, tmp_path / "old.safetensors"):
        unet, text_encoder = _models(tiny_model)
        apply_loras(unet, text_encoder, [LoraSpec(path)])
        results.append(_forward(unet, text_encoder))
    torch.testing.assert_close(results[0], results[1], atol=0, rtol=0)


@pytest.mark.parametrize("builder, kind", [(kohya, "lora"), (loha, "loha"), (BUILDERS["LyCORIS LoKr, w1 and w2 decomposed"], "lokr"),
                                           (BUILDERS["LyCORIS DoRA (dora_scale)"], "dora"), (BUILDERS["LyCORIS LoCon with lora_mid (Tucker)"], "locon")])
def test_describe_lora(tiny_model, tmp_path, builder, kind):
    info = describe_lora(builder(tiny_model, tmp_path).path)
    assert info["kind"] == kind and info["format"] == "kohya"
    assert info["targets"] == ["unet", "text_encoder"] and info["modules"] > 10 and info["base"] == "unknown"
    assert info["rank"] == (1 if kind == "lokr" else 4) and info["alpha"] in (2.0, 4.0)


def test_describe_lora_guesses_the_model_family_and_refuses_junk(tiny_model, tmp_path):
    assert describe_lora(sd2(tiny_model, tmp_path).path)["base"] == "SD2"
    assert describe_lora(sdxl(tiny_model, tmp_path).path)["base"] == "SDXL"
    peft = describe_lora(BUILDERS["peft/diffusers LoRA, UNet + text encoder"](tiny_model, tmp_path).path)
    assert peft["format"] == "peft" and peft["alpha"] is None and peft["rank"] == 4
    (tmp_path / "junk.safetensors").write_bytes(b"nope")
    with pytest.raises(ModelError, match="not a readable .safetensors file"):
        describe_lora(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("tensors, message", [
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.oft_blocks": torch.zeros(4, 8, 8)}, "LyCORIS OFT file"),
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4)}, "full Stable Diffusion checkpoint"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 32, 1, 1),
      "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 2, 1, 1),
      "lora_unet_down_blocks_0_attentions_0_proj_in.something_new": torch.zeros(2)}, "not LoRA/LyCORIS weights ldm knows"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 48, 1, 1),
      "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 2, 1, 1)}, "trained for another model"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.zeros(32, 2),
      "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_b": torch.zeros(2, 32)}, "has no hada_w2_a); the file is incomplete"),
])
def test_unusable_files_get_one_line_and_nothing_changes(ldm, tiny_model, tmp_path, tensors, message):
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    result = ldm("generate", "x", "--model", tiny_model, "--steps", "1", "--lora", "bad.safetensors")
    errors = [line for line in result.stderr.splitlines() if line.startswith("ldm:")]
    assert result.code == 1 and len(errors) == 1 and message in errors[0], result.stderr
    assert "damaged" not in result.stderr and "internal error" not in result.stderr


def test_a_bad_second_lora_leaves_the_weights_untouched(tiny_model, tmp_path):
    good = kohya(tiny_model, tmp_path).path
    bad = sd2(tiny_model, tmp_path).path
    unet, text_encoder = _models(tiny_model)
    before = _forward(unet, text_encoder)
    with pytest.raises(ModelError, match="for SD2 models"):
        apply_loras(unet, text_encoder, [LoraSpec(good), LoraSpec(bad)])
    torch.testing.assert_close(_forward(unet, text_encoder), before, atol=0, rtol=0)


@pytest.mark.parametrize("axis", ["out", "in"])
def test_dora_normalises_over_the_axis_its_magnitude_spans(axis):
    g = torch.Generator().manual_seed(0)
    weight, delta = torch.randn(6, 5, 3, 3, generator=g), torch.randn(6, 5, 3, 3, generator=g) * 0.1
    if axis == "out":
        magnitude = torch.rand(6, 1, 1, 1, generator=g) + 0.5
        norms = decompose(weight, delta, magnitude).reshape(6, -1).norm(dim=1)
    else:
        magnitude = torch.rand(1, 5, 1, 1, generator=g) + 0.5
        norms = decompose(weight, delta, magnitude).transpose(0, 1).reshape(5, -1).norm(dim=1)
    torch.testing.assert_close(norms, magnitude.flatten(), atol=1e-5, rtol=1e-5)


def test_dora_scale_zero_is_the_base_model_and_one_is_full(tiny_model, tmp_path):
    path = BUILDERS["LyCORIS DoRA (dora_scale)"](tiny_model, tmp_path).path
    outputs = []
    for scale in (None, 0.0, 1.0):
        unet, text_encoder = _models(tiny_model)
        if scale is not None:
            apply_loras(unet, text_encoder, [LoraSpec(path, scale)])
        outputs.append(_forward(unet, text_encoder))
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-5)
    assert (outputs[2] - outputs[0]).abs().max() > 1e-2



def test_peft_adapter_files_with_base_model_prefix_apply_like_diffusers_keys(tiny_model, tmp_path):
    """peft's PeftModel.save_pretrained names keys base_model.model.<module>.lora_A.weight."""
    plain = BUILDERS["peft/diffusers LoRA, UNet + text encoder"](tiny_model, tmp_path).path
    unet_only = {k.removeprefix("unet."): v for k, v in load_file(plain).items() if k.startswith("unet.")}
    save_file({f"base_model.model.{k}": v for k, v in unet_only.items()}, str(tmp_path / "peft-model.safetensors"))
    save_file({f"unet.{k}": v for k, v in unet_only.items()}, str(tmp_path / "unet.safetensors"))
    results = []
    for path in (tmp_path / "peft-model.safetensors", tmp_path / "unet.safetensors"):
        unet, text_encoder = _models(tiny_model)
        apply_loras(unet, text_encoder, [LoraSpec(path)])
        results.append(_forward(unet, text_encoder))
    torch.testing.assert_close(results[0], results[1], atol=0, rtol=0)
    assert describe_lora(tmp_path / "peft-model.safetensors")["targets"] == ["unet"]
