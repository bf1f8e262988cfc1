"""`ldm inspect`: what a file is (from real key names and shapes), its hashes, and how ldm can use it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file


def _z(*shape):
    return torch.zeros(*shape, dtype=torch.float16)


def _checkpoint(path, in_channels=4, context=768, sdxl=False, vae=True):
    tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": _z(320, in_channels, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": _z(320, context),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": _z(8, context),
    }
    if vae:
        tensors["first_stage_model.encoder.conv_in.weight"] = _z(128, 3, 3, 3)
    if sdxl:
        tensors["conditioner.embedders.1.model.ln_final.weight"] = _z(1280)
        tensors["model.diffusion_model.label_emb.0.0.weight"] = _z(1280, 2816)
    save_file(tensors, str(path))
    return path


def _inspect(ldm, path):
    result = ldm("inspect", path, "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("kwargs, family, usable, words", [
    ({}, "SD1.x", True, "--model"),
    ({"in_channels": 9}, "SD1.x", True, "--mask"),
    ({"context": 1024}, "SD2.x", False, "SD2.x is not supported"),
    ({"context": 2048, "sdxl": True}, "SDXL", False, "SDXL is not supported"),
    ({"vae": False}, "SD1.x", True, "--vae"),
])
def test_single_file_checkpoints(ldm, tmp_path, kwargs, family, usable, words):
    path = _checkpoint(tmp_path / "model.safetensors", **kwargs)
    report = _inspect(ldm, path)
    assert report["family"] == family and report["usable"] is usable and words in report["use"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["hashes"]["sha256"] == digest and report["hashes"]["a1111_model_hash"] == digest[:10]
    assert len(report["hashes"]["a1111_old_model_hash"]) == 8
    if kwargs.get("in_channels") == 9:
        assert "inpainting" in report["what"]
    text = ldm("inspect", path)
    assert text.code == 0 and text.stdout.startswith(f"{path}: ") and digest in text.stdout


def test_a_diffusers_folder_and_its_parts(ldm, tiny_model):
    report = _inspect(ldm, tiny_model)
    assert report["usable"] and report["use"] == f"--model {tiny_model}" and "diffusers model folder" in report["what"]
    assert _inspect(ldm, tiny_model / "vae")["use"].startswith("--vae")
    unet = _inspect(ldm, tiny_model / "unet" / "diffusion_pytorch_model.safetensors")
    assert "UNet" in unet["what"] and not unet["usable"] and "model_index.json" in unet["use"]


def test_a_vae_single_file(ldm, tmp_path):
    save_file({"encoder.conv_in.weight": _z(128, 3, 3, 3), "decoder.conv_out.weight": _z(3, 128, 3, 3),
               "encoder.down.0.block.0.conv1.weight": _z(128, 128, 3, 3)}, str(tmp_path / "x.vae.safetensors"))
    report = _inspect(ldm, tmp_path / "x.vae.safetensors")
    assert report["what"] == "a VAE" and report["details"]["names"] == "LDM" and "--vae" in report["use"]


def _kohya(prefix="lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", width=768, rank=8, alpha=4.0):
    return {f"{prefix}.lora_down.weight": _z(rank, width), f"{prefix}.lora_up.weight": _z(320, rank), f"{prefix}.alpha": torch.tensor(alpha)}


def test_loras_of_each_kind(ldm, tmp_path):
    cases = {
        "kohya": (_kohya() | _kohya("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 8, 4.0), "LoRA (kohya)", "SD1.x"),
        "xl": (_kohya(width=2048) | _kohya("lora_te1_text_model_encoder_layers_0_self_attn_q_proj"), "LoRA (kohya)", "SDXL"),
        "peft": ({"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": _z(4, 768),
                  "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": _z(320, 4)},
                 "LoRA (peft/diffusers)", "SD1.x"),
        "loha": ({"lora_unet_x_attn2_to_k.hada_w1_a": _z(320, 4), "lora_unet_x_attn2_to_k.hada_w1_b": _z(4, 768),
                  "lora_unet_x_attn2_to_k.hada_w2_a": _z(320, 4), "lora_unet_x_attn2_to_k.hada_w2_b": _z(4, 768),
                  "lora_unet_x_attn2_to_k.alpha": torch.tensor(2.0)}, "LoHa", None),
        "lokr": ({"lora_unet_x_to_q.lokr_w1": _z(4, 4), "lora_unet_x_to_q.lokr_w2": _z(80, 192)}, "LoKr", None),
        "dora": (_kohya() | {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.dora_scale": _z(1, 768)},
                 "LoRA (kohya) + DoRA (dora_scale)", "SD1.x"),
        "tucker": (_kohya() | {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_mid.weight": _z(8, 8, 3, 3)},
                   "LoCon (Tucker, lora_mid)", "SD1.x"),
    }
    for name, (tensors, kind, family) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path))
        report = _inspect(ldm, path)
        assert report["what"] == kind, name
        if family:
            assert report["family"] == family, name
        data = path.read_bytes()
        assert report["hashes"]["a1111_lora_hash"] == hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]
        assert report["usable"] is (family != "SDXL"), name
    kohya = _inspect(ldm, tmp_path / "kohya.safetensors")
    assert kohya["details"]["rank"] == [8] and kohya["details"]["alpha"] == [4.0]
    assert kohya["details"]["unet_modules"] == 1 and kohya["details"]["text_encoder_modules"] == 1
    assert kohya["details"]["targets"] == ["q_proj", "to_k"]
    assert "<lora:kohya:0.8>" in kohya["use"] and "--lora" in kohya["use"]


@pytest.mark.parametrize("tensors, family, usable", [
    ({"emb_params": _z(4, 768)}, "SD1.x", True),
    ({"string_to_param.*": _z(2, 1024)}, "SD2.x", False),
    ({"clip_g": _z(2, 1280), "clip_l": _z(2, 768)}, "SDXL", False),
    ({"<cat-toy>": _z(768)}, "SD1.x", True),
])
def test_embeddings(ldm, tmp_path, tensors, family, usable):
    save_file(tensors, str(tmp_path / "emb.safetensors"))
    report = _inspect(ldm, tmp_path / "emb.safetensors")
    assert report["what"] == "a textual-inversion embedding" and report["family"] == family and report["usable"] is usable
    assert report["hashes"]["a1111_ti_hash"] == report["hashes"]["sha256"][:12]
    if "<cat-toy>" in tensors:
        assert report["details"]["token"] == "<cat-toy>" and report["details"]["vectors"] == 1


def test_latent_file_and_images(ldm, tmp_path):
    from ldm_cli.files.latent_files import LatentHeader, save_latents

    path = save_latents(torch.zeros(1, 4, 8, 8), LatentHeader(0.18215, "mean", "demo", "0" * 64), tmp_path / "a.latent.safetensors")
    report = _inspect(ldm, path)
    assert report["what"] == "an ldm latent file" and report["details"]["shape"] == [1, 4, 8, 8] and "ldm decode" in report["use"]
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png", pnginfo=info)
    report = _inspect(ldm, tmp_path / "a.png")
    assert "A1111 generation metadata" in report["what"] and "ldm info" in report["use"]


def test_a_pickle_checkpoint_is_read_safely(ldm, tmp_path):
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": _z(320, 4, 3, 3),
                               "model.diffusion_model.x.attn2.to_k.weight": _z(320, 768)}}, str(tmp_path / "old.ckpt"))
    report = _inspect(ldm, tmp_path / "old.ckpt")
    assert report["family"] == "SD1.x" and "--allow-pickle" in report["use"]


def test_foreign_and_broken_files_get_one_line(ldm, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    save_file({"emb_params": _z(4, 768)}, str(tmp_path / "cut.safetensors"))
    data = (tmp_path / "cut.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    for name, words in [("notes.txt", "a text file"), ("empty.safetensors", "empty"), ("cut.safetensors", "truncated"),
                        ("missing.safetensors", "no such file")]:
        result = ldm("inspect", tmp_path / name)
        assert result.code == 1 and words in result.stderr, name
        assert len(result.stderr.strip().splitlines()) == 1 and "internal error" not in result.stderr


def test_info_on_a_model_file_points_to_inspect(ldm, tmp_path):
    path = _checkpoint(tmp_path / "model.safetensors")
    result = ldm("info", path)
    assert result.code == 1 and "ldm inspect" in result.stderr


@pytest.mark.parametrize("change, family, usable, words", [
    ({"in_channels": 9}, "SD1-family", True, "--mask"),
    ({"cross_attention_dim": 1024}, "SD2.x", False, "SD2.x is not supported"),
    ({"cross_attention_dim": 2048, "addition_embed_type": "text_time"}, "SDXL", False, "SDXL is not supported"),
])
def test_diffusers_folders_of_other_kinds(ldm, tiny_model, tmp_path, change, family, usable, words):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**config, **change}))
    report = _inspect(ldm, folder)
    assert report["family"].startswith(family) and report["usable"] is usable and words in report["use"]
