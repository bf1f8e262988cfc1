"""The demo model's data: the shapes generator, the pixel checker, `ldm demo-data`, `ldm train-vae`."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ldm_cli.demo.checker import agrees, read_image
from ldm_cli.demo.shapes import COLOURS, HELD_OUT, SHAPES, Scene, random_scene, render, sample_training_scenes


def test_plain_caption_and_palette():
    assert Scene("red", "blue", "circle", "large").caption(0) == "a red circle on a blue background"
    assert {"red", "green", "blue", "yellow", "white", "black"} <= set(COLOURS)
    assert {"circle", "square", "triangle"} <= set(SHAPES) and len(SHAPES) >= 4


def test_training_scenes_skip_held_out_pairs_and_vary_captions():
    pairs = sample_training_scenes(2000, seed=3)
    assert not any(scene.held_out for scene, _ in pairs)
    assert all(scene.colour != scene.background for scene, _ in pairs)
    assert len({caption.split(" on ")[0] for _, caption in pairs}) > 50
    seen = {(s.colour, s.shape) for s, _ in pairs}
    assert seen == {(c, s) for c in COLOURS for s in SHAPES} - HELD_OUT


@pytest.mark.parametrize("seed", [0, 1])
def test_checker_reads_every_attribute_of_rendered_scenes(seed):
    rng = random.Random(seed)
    for _ in range(60):
        scene = random_scene(rng, allow_held_out=True)
        reading = read_image(np.asarray(render(scene)))
        assert (reading.colour, reading.background, reading.shape, reading.size) == (
            scene.colour, scene.background, scene.shape, scene.size
        ), scene


def test_checker_says_no_to_the_wrong_picture():
    triangle = np.asarray(render(Scene("red", "blue", "triangle", "small")))
    verdict = agrees(read_image(triangle), {"colour": "green", "background": "blue", "shape": "circle", "size": "large"})
    assert verdict == {"colour": False, "background": True, "shape": False, "size": False}
    blank = np.full((128, 128, 3), 30, dtype=np.uint8)
    assert read_image(blank).shape is None


def test_demo_data_writes_a_reproducible_imagefolder(ldm, tmp_path):
    assert ldm("demo-data", tmp_path / "a", "--count", "6", "--seed", "4").code == 0
    assert ldm("demo-data", tmp_path / "b", "--count", "6", "--seed", "4").code == 0
    assert ldm("demo-data", tmp_path / "c", "--count", "6", "--seed", "5").code == 0
    lines = [json.loads(x) for x in (tmp_path / "a" / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all((tmp_path / "a" / x["file_name"]).is_file() for x in lines)
    assert (tmp_path / "a" / "metadata.jsonl").read_text() == (tmp_path / "b" / "metadata.jsonl").read_text()
    assert (tmp_path / "a" / "metadata.jsonl").read_text() != (tmp_path / "c" / "metadata.jsonl").read_text()
    scene = Scene(**lines[0]["scene"])
    assert read_image(np.asarray(render(scene))).shape == scene.shape


def test_demo_data_refuses_bad_input_without_overwriting(ldm, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = ldm("demo-data", tmp_path / "full", "--count", "3")
    assert result.code == 2 and "not empty" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert ldm("demo-data", tmp_path / "x", "--count", "0").code == 2


def test_train_vae_command_writes_a_loadable_vae_and_refuses_to_overwrite(ldm, tmp_path):
    from diffusers import AutoencoderKL

    assert ldm("demo-data", tmp_path / "data", "--count", "4").code == 0
    result = ldm("train-vae", tmp_path / "data", "-o", tmp_path / "vae", "--steps", "2", "--full-steps", "1", "--batch", "2")
    assert result.code == 0, result.stderr
    assert "PSNR" in result.stdout
    vae = AutoencoderKL.from_pretrained(tmp_path / "vae")
    assert len(vae.config.block_out_channels) == 4 and vae.config.latent_channels == 4  # factor 8, 4 channels
    assert vae.config.scaling_factor != 0.18215  # measured on the data, not SD1's constant
    again = ldm("train-vae", tmp_path / "data", "-o", tmp_path / "vae")
    assert again.code == 2 and "already holds" in again.stderr


def test_train_vae_rejects_bad_data(ldm, tmp_path):
    assert ldm("train-vae", tmp_path / "missing", "-o", tmp_path / "v").code == 2
    (tmp_path / "mixed").mkdir()
    render(Scene("red", "blue", "circle", "large")).save(tmp_path / "mixed" / "a.png")
    render(Scene("red", "blue", "circle", "large")).resize((64, 64)).save(tmp_path / "mixed" / "b.png")
    result = ldm("train-vae", tmp_path / "mixed", "-o", tmp_path / "v")
    assert result.code == 1 and "differ in size" in result.stderr
    assert ldm("train-vae", tmp_path / "mixed", "-o", tmp_path / "v", "--crop", "12").code == 2
