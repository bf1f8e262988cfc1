"""`ldm generate` end to end on a tiny real model: files, metadata, naming, reproducibility."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ldm_cli.files.metadata import parse_a1111


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_generate_writes_png_with_both_metadata_chunks(ldm, tiny_model, tmp_path):
    result = ldm("generate", "a red circle", "--model", tiny_model, "--steps", "4", "--seed", "42",
                 "--neg", "blurry", "--out", "out.png")
    assert result.code == 0, result.stderr
    image = Image.open(tmp_path / "out.png")
    assert image.size == (64, 64)
    parsed = parse_a1111(image.text["parameters"])
    assert parsed["prompt"] == "a red circle"
    assert parsed["negative_prompt"] == "blurry"
    assert parsed["fields"]["Steps"] == "4"
    assert parsed["fields"]["Seed"] == "42"
    assert parsed["fields"]["Size"] == "64x64"
    assert parsed["fields"]["Sampler"] == "PLMS"
    record = json.loads(image.text["ldm"])
    assert record["settings"]["guidance"] == 7.5
    assert set(record["model"]["hashes"]) == {"text_encoder", "vae", "unet"}
    assert record["versions"]["torch"] and record["dtype"] == "fp32" and record["device"] == "cpu"
    assert "generate_s" in record["timings"]


def test_never_overwrites_and_seed_plus_i(ldm, tiny_model, tmp_path):
    args = ("generate", "a blue square", "--model", tiny_model, "--steps", "3", "--seed", "7", "--out", "x.png")
    assert ldm(*args).code == 0
    assert ldm(*args, "-n", "2").code == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["x-2.png", "x-3.png", "x.png"]
    # Image 0 of the batch reproduces the single run; image 1 used seed 8 and can be reproduced alone.
    assert np.array_equal(_pixels(tmp_path / "x.png"), _pixels(tmp_path / "x-2.png"))
    assert json.loads(Image.open(tmp_path / "x-3.png").text["ldm"])["seed"] == 8
    assert ldm("generate", "a blue square", "--model", tiny_model, "--steps", "3", "--seed", "8", "--out", "y.png").code == 0
    assert np.array_equal(_pixels(tmp_path / "x-3.png"), _pixels(tmp_path / "y.png"))


def test_random_seed_is_printed_and_recorded(ldm, tiny_model, tmp_path):
    result = ldm("generate", "a cat", "--model", tiny_model, "--steps", "2", "--json", "--out", "folder")
    assert result.code == 0, result.stderr
    line = json.loads(result.stdout.strip())
    assert f"seed {line['seed']} (random)" in result.stderr
    assert json.loads(Image.open(line["path"]).text["ldm"])["seed"] == line["seed"]


def test_json_lines_and_prompts_file(ldm, tiny_model, tmp_path):
    (tmp_path / "p.txt").write_text("# comment\nfirst prompt\n\nsecond prompt\n")
    result = ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, "--steps", "2", "--seed", "1",
                 "-n", "2", "--json", "--out", "imgs")
    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["prompt"], r["seed"]) for r in lines] == [
        ("first prompt", 1), ("first prompt", 2), ("second prompt", 1), ("second prompt", 2)]
    assert all((tmp_path / r["path"]).is_file() for r in lines)


def test_from_image_reruns_the_recorded_settings(ldm, tiny_model, tmp_path):
    assert ldm("generate", "a green triangle", "--model", tiny_model, "--steps", "3", "--seed", "5",
               "--scheduler", "euler-a", "--g", "3", "--out", "a.png").code == 0
    result = ldm("generate", "--from", "a.png", "--out", "b.png")
    assert result.code == 0, result.stderr
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "b.png"))
    record = json.loads(Image.open(tmp_path / "b.png").text["ldm"])
    assert record["settings"]["scheduler"] == "euler-a" and record["settings"]["guidance"] == 3.0
    # An explicit flag overrides what the image recorded.
    assert ldm("generate", "--from", "a.png", "--steps", "2", "--out", "c.png").code == 0
    assert json.loads(Image.open(tmp_path / "c.png").text["ldm"])["settings"]["steps"] == 2


def test_info_prints_the_record(ldm, tiny_model, tmp_path):
    assert ldm("generate", "a moon", "--model", tiny_model, "--steps", "2", "--seed", "3", "--out", "m.png").code == 0
    result = ldm("info", "m.png")
    assert result.code == 0
    assert "Seed: 3" in result.stdout and '"prompt": "a moon"' in result.stdout
    assert ldm("info", "missing.png").code == 1


def test_save_intermediates_preview_and_exact(ldm, tiny_model, tmp_path):
    for mode in ("preview", "exact"):
        result = ldm("generate", "a sun", "--model", tiny_model, "--steps", "6", "--seed", "1", "--out", f"{mode}.png",
                     "--save-intermediates", "--every", "2", "--intermediates", mode, "--scheduler", "ddim")
        assert result.code == 0, result.stderr
        folder = tmp_path / f"{mode}-steps"
        assert sorted(p.name for p in folder.iterdir()) == ["sheet.png", "step-0002.png", "step-0004.png", "step-0006.png"]
        assert Image.open(folder / "step-0002.png").size == (64, 64)
        assert Image.open(folder / "sheet.png").size[0] == 3 * 128


def test_long_prompt_is_encoded_whole_not_cut(ldm, tiny_model, tmp_path):
    """Past 75 tokens the prompt goes to CLIP in a second chunk (A1111), so its last words still count."""
    prompt = " ".join(["red"] * 80)
    base = ("generate", "--model", tiny_model, "--steps", "1", "--seed", "1")
    result = ldm(*base, prompt + " zebra giraffe", "--out", "a.png")
    assert result.code == 0 and "dropped" not in result.stderr
    assert ldm(*base, prompt + " ocean waves", "--out", "b.png").code == 0
    assert not np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "b.png"))


def test_guidance_one_skips_the_unconditional_pass(ldm, tiny_model, tmp_path):
    """With g <= 1 the negative prompt cannot matter, because it is never encoded or used."""
    base = ("generate", "a dog", "--model", tiny_model, "--steps", "3", "--seed", "2", "--g", "1")
    assert ldm(*base, "--out", "a.png").code == 0
    assert ldm(*base, "--neg", "something else entirely", "--out", "b.png").code == 0
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "b.png"))


def test_every_generate_flag_has_its_field_in_generate_flags():
    """generate passes each flag to GenerateFlags by name; a flag without a field would be dropped."""
    import inspect
    from dataclasses import fields

    from ldm_cli.commands.generate import generate
    from ldm_cli.commands.generate_flags import GenerateFlags

    assert {f.name for f in fields(GenerateFlags)} == set(inspect.signature(generate).parameters)
