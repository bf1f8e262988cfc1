"""LoRAs in the A1111 line and back: --lora records <lora:NAME:W> and `Lora hashes`, prompt tags are
resolved in --lora-dir, --from re-applies what an image used and says what it cannot find."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from ldm_cli.files.metadata import parse_a1111

ARGS = ("--steps", "2", "--seed", "7", "--scheduler", "euler")


@pytest.fixture(scope="module")
def lora_file(kohya_lora_tensors, tmp_path_factory):
    """The shared kohya LoRA (conftest) as style.safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("loras")
    save_file(kohya_lora_tensors, str(folder / "style.safetensors"), metadata={"ss_network_dim": "4"})
    return folder / "style.safetensors"


def _addnet_hash(path) -> str:
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _parameters(path):
    return parse_a1111(Image.open(path).text["parameters"])


def test_lora_flag_is_recorded_as_a1111_records_it(ldm, tiny_model, lora_file, tmp_path):
    result = ldm("generate", "a cat", "--model", tiny_model, *ARGS, "--lora", f"{lora_file}:0.7", "--out", "a.png")
    assert result.code == 0, result.stderr
    parsed = _parameters(tmp_path / "a.png")
    assert parsed["prompt"] == "a cat <lora:style:0.7>"
    assert parsed["fields"]["Lora hashes"] == f"style: {_addnet_hash(lora_file)[:12]}"
    assert 'Lora hashes: "style: ' in Image.open(tmp_path / "a.png").text["parameters"]
    record = json.loads(Image.open(tmp_path / "a.png").text["ldm"])
    assert record["prompt"] == "a cat"
    (lora,) = record["networks"]["loras"]
    assert lora["path"] == str(lora_file.resolve()) and lora["scale"] == 0.7 and lora["source"] == "flag"
    assert lora["sha256"] == hashlib.sha256(lora_file.read_bytes()).hexdigest()


def test_a_prompt_tag_equals_the_flag_and_stays_in_the_recorded_prompt(ldm, tiny_model, lora_file, tmp_path):
    assert ldm("generate", "a cat", "--model", tiny_model, *ARGS, "--lora", f"{lora_file}:0.7", "--out", "flag.png").code == 0
    assert ldm("generate", "a cat", "--model", tiny_model, *ARGS, "--out", "plain.png").code == 0
    result = ldm("generate", "a cat <lora:style:0.7>", "--model", tiny_model, *ARGS, "--lora-dir", lora_file.parent, "--out", "tag.png")
    assert result.code == 0, result.stderr
    assert "warning" not in result.stderr
    assert np.array_equal(_pixels(tmp_path / "tag.png"), _pixels(tmp_path / "flag.png"))
    assert np.abs(_pixels(tmp_path / "tag.png") - _pixels(tmp_path / "plain.png")).max() > 8
    parsed = _parameters(tmp_path / "tag.png")
    assert parsed["prompt"] == "a cat <lora:style:0.7>"
    assert parsed["fields"]["Lora hashes"] == f"style: {_addnet_hash(lora_file)[:12]}"


def test_lora_dir_defaults_to_the_environment(ldm, tiny_model, lora_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LORA_DIR", str(lora_file.parent))
    assert ldm("generate", "a cat", "--model", tiny_model, *ARGS, "--lora", f"{lora_file}:1", "--out", "flag.png").code == 0
    result = ldm("generate", "a cat <lyco:style>", "--model", tiny_model, *ARGS, "--out", "env.png")
    assert result.code == 0, result.stderr
    assert np.array_equal(_pixels(tmp_path / "env.png"), _pixels(tmp_path / "flag.png"))


def test_an_unknown_tag_is_named_in_one_warning_and_removed(ldm, tiny_model, lora_file, tmp_path):
    assert ldm("generate", "a cat", "--model", tiny_model, *ARGS, "--out", "plain.png").code == 0
    result = ldm("generate", "a cat<lora:nothere:0.5><lora:gone>", "--model", tiny_model, *ARGS,
                 "--lora-dir", lora_file.parent, "--out", "u.png")
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "nothere, gone" in warnings[0]
    assert np.array_equal(_pixels(tmp_path / "u.png"), _pixels(tmp_path / "plain.png"))


def test_a_bad_tag_weight_is_a_usage_error(ldm, tiny_model):
    result = ldm("generate", "a cat <lora:style:strong>", "--model", tiny_model, *ARGS)
    assert result.code == 2 and "<lora:style:strong>" in result.stderr and "loading" not in result.stderr


def test_a_missing_lora_dir_is_a_usage_error(ldm, tiny_model, tmp_path):
    result = ldm("generate", "a cat", "--model", tiny_model, "--lora-dir", tmp_path / "nope")
    assert result.code == 2 and "--lora-dir" in result.stderr and "no such folder" in result.stderr


def test_from_reapplies_the_lora_by_path_then_by_name(ldm, tiny_model, lora_file, tmp_path):
    own = tmp_path / "mine.safetensors"
    shutil.copy(lora_file, own)
    assert ldm("generate", "a cat", "--model", tiny_model, *ARGS, "--lora", f"{own}:0.7", "--out", "orig.png").code == 0
    result = ldm("generate", "--from", "orig.png", "--out", "again.png")
    assert result.code == 0, result.stderr
    assert np.array_equal(_pixels(tmp_path / "again.png"), _pixels(tmp_path / "orig.png"))

    moved = tmp_path / "moved"
    moved.mkdir()
    own.rename(moved / "mine.safetensors")
    result = ldm("generate", "--from", "orig.png", "--out", "lost.png")
    assert result.code == 0
    assert "LoRAs it used cannot be found" in result.stderr and "mine" in result.stderr
    assert not np.array_equal(_pixels(tmp_path / "lost.png"), _pixels(tmp_path / "orig.png"))
    result = ldm("generate", "--from", "orig.png", "--lora-dir", moved, "--out", "found.png")
    assert result.code == 0 and "cannot be found" not in result.stderr
    assert np.array_equal(_pixels(tmp_path / "found.png"), _pixels(tmp_path / "orig.png"))


def test_from_an_a1111_png_with_a_lora_tag(ldm, tiny_model, lora_file, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat <lora:style:0.7>\nSteps: 2, Sampler: Euler, CFG scale: 7.5, Seed: 7, Size: 64x64, "
                                f'Lora hashes: "style: {_addnet_hash(lora_file)[:12]}", Version: v1.10.1')
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "theirs.png", pnginfo=info)
    assert ldm("generate", "a cat", "--model", tiny_model, *ARGS, "--lora", f"{lora_file}:0.7", "--out", "flag.png").code == 0
    result = ldm("generate", "--from", "theirs.png", "--model", tiny_model, "--lora-dir", lora_file.parent, "--out", "replay.png")
    assert result.code == 0, result.stderr
    assert np.array_equal(_pixels(tmp_path / "replay.png"), _pixels(tmp_path / "flag.png"))
    missing = ldm("generate", "--from", "theirs.png", "--model", tiny_model, "--out", "nolora.png")
    assert missing.code == 0 and "style" in missing.stderr and "not found" in missing.stderr


def test_prompts_with_different_lora_sets_each_equal_their_single_run(ldm, tiny_model, lora_file, tmp_path):
    (tmp_path / "p.txt").write_text("a cat <lora:style:0.5>\na dog\na cat <lora:style:1>\n")
    result = ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, *ARGS, "--lora-dir", lora_file.parent,
                 "--out", "batch", "--json")
    assert result.code == 0, result.stderr
    written = {json.loads(line)["prompt"]: json.loads(line)["path"] for line in result.stdout.splitlines()}
    assert len(written) == 3
    for n, prompt in enumerate(written):
        assert ldm("generate", prompt, "--model", tiny_model, *ARGS, "--lora-dir", lora_file.parent, "--out", f"s{n}.png").code == 0
        assert np.array_equal(_pixels(tmp_path / f"s{n}.png"), _pixels(written[prompt])), prompt


def test_from_warns_when_the_recorded_model_hash_differs(ldm, tiny_model, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 7, Size: 64x64, Model hash: 0123456789, Model: other")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "theirs.png", pnginfo=info)
    result = ldm("generate", "--from", "theirs.png", "--model", tiny_model, "--out", "x.png")
    assert result.code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "Model hash" in line]
    assert len(lines) == 1 and "0123456789" in lines[0]
    ours = _parameters(tmp_path / "x.png")["fields"]["Model hash"]
    assert ours in lines[0]
    same = ldm("generate", "--from", "x.png", "--out", "y.png")
    assert same.code == 0 and "Model hash" not in same.stderr


def test_from_an_image_made_with_a_tag_finds_the_lora_by_its_recorded_path(ldm, tiny_model, lora_file, tmp_path):
    made = ldm("generate", "a cat <lora:style:0.7>", "--model", tiny_model, *ARGS, "--lora-dir", lora_file.parent, "--out", "t.png")
    assert made.code == 0, made.stderr
    result = ldm("generate", "--from", "t.png", "--out", "again.png")  # no --lora-dir this time
    assert result.code == 0 and "warning" not in result.stderr, result.stderr
    assert np.array_equal(_pixels(tmp_path / "again.png"), _pixels(tmp_path / "t.png"))


def test_a_stale_lora_dir_variable_does_not_stop_plain_runs(ldm, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LORA_DIR", str(tmp_path / "gone"))
    assert ldm("generate", "a cat", "--model", tiny_model, "--steps", "1").code == 0
    result = ldm("generate", "a cat <lora:style>", "--model", tiny_model, "--steps", "1")
    assert result.code == 0 and "$LDM_LORA_DIR names no folder" in result.stderr and "style" in result.stderr


def test_tags_ldm_cannot_honour_are_each_named(lora_file):
    from ldm_cli.pipeline.config import GenerateSettings
    from ldm_cli.pipeline.records.networks import plan_networks

    settings = GenerateSettings(prompts=("a <lora:style:0.5:0.2> <hypernet:h:1> <lora:style:1:dyn=4> cat",),
                                negative_prompt="<lora:style:1> ugly", lora_dirs=(lora_file.parent,))
    plan = plan_networks(settings)
    assert [(u.name, u.scale, u.unet_scale) for u in plan.loras_for(settings.prompts[0])] == [
        ("style", 0.5, 0.2), ("style", 1.0, None)]
    text = "\n".join(plan.warnings)
    assert "separate UNet weight" not in text and "dyn" in text and "<hypernet:h:1>" in text and "negative prompt" in text
    assert plan.clip_text(settings.prompts[0]) == "a    cat"


def test_a_tag_finds_a_lora_by_its_kohya_output_name(ldm, tiny_model, lora_file, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "lib"
    folder.mkdir()
    save_file(load_file(str(lora_file)), str(folder / "download-1234.safetensors"), metadata={"ss_output_name": "pixelart"})
    assert ldm("generate", "a cat", "--model", tiny_model, *ARGS, "--lora", f"{lora_file}:0.7", "--out", "flag.png").code == 0
    result = ldm("generate", "a cat <lora:pixelart:0.7>", "--model", tiny_model, *ARGS, "--lora-dir", folder, "--out", "alias.png")
    assert result.code == 0 and "warning" not in result.stderr, result.stderr
    assert np.array_equal(_pixels(tmp_path / "alias.png"), _pixels(tmp_path / "flag.png"))


def test_a_tag_weights_the_text_encoder_and_the_unet_apart(ldm, tiny_model, tmp_path):
    """<lora:NAME:TE:UNET> as A1111: TE 0 / UNet 1 equals the file's UNet half alone, and TE 1 / UNet 0
    its text-encoder half alone."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    torch.manual_seed(5)
    unet_half, te_half = {}, {}
    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    for name, module in unet.named_modules():
        if name.endswith("attn2.to_k"):
            key = "lora_unet_" + name.replace(".", "_")
            unet_half[f"{key}.lora_down.weight"] = torch.randn(4, module.weight.shape[1])
            unet_half[f"{key}.lora_up.weight"] = torch.randn(module.weight.shape[0], 4)
    text_encoder = CLIPTextModel.from_pretrained(tiny_model, subfolder="text_encoder")
    for name, module in text_encoder.named_modules():
        if name.endswith("self_attn.q_proj"):
            key = "lora_te_text_model_" + name.removeprefix("text_model.").replace(".", "_")
            te_half[f"{key}.lora_down.weight"] = torch.randn(4, module.weight.shape[1]) * 3
            te_half[f"{key}.lora_up.weight"] = torch.randn(module.weight.shape[0], 4) * 3
    assert unet_half and te_half
    lib = tmp_path / "lib"
    lib.mkdir()
    save_file({**unet_half, **te_half}, str(lib / "both.safetensors"))
    save_file(unet_half, str(tmp_path / "unet-half.safetensors"))
    save_file(te_half, str(tmp_path / "te-half.safetensors"))
    common = ("--model", tiny_model, *ARGS, "--lora-dir", lib)
    runs = {
        "tag-unet": ("a cat <lora:both:0:1>", ()), "file-unet": ("a cat", ("--lora", tmp_path / "unet-half.safetensors")),
        "tag-te": ("a cat <lora:both:1:0>", ()), "file-te": ("a cat", ("--lora", tmp_path / "te-half.safetensors")),
        "plain": ("a cat", ()),
    }
    for name, (prompt, extra) in runs.items():
        result = ldm("generate", prompt, *common, *extra, "--out", f"{name}.png")
        assert result.code == 0, result.stderr
    px = {name: _pixels(tmp_path / f"{name}.png") for name in runs}
    assert np.array_equal(px["tag-unet"], px["file-unet"]) and np.array_equal(px["tag-te"], px["file-te"])
    assert not np.array_equal(px["tag-unet"], px["plain"]) and not np.array_equal(px["tag-te"], px["plain"])
