"""Hostile and careless inputs: undecodable prompts, hostile PNG metadata, bombs, bad LoRAs, bad latent
headers, mixed good/bad batches, and messages that must blame the right thing."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file

from conftest import assert_clean_failure, assert_untouched, env, ldm, snapshot

TO_Q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # [32, 32] in the tiny model


def _png(path: Path, **chunks: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value)
    Image.new("RGB", (64, 64), (10, 120, 200)).save(path, pnginfo=info)
    return path


def _bomb(path: Path, side: int = 20000) -> Path:
    """A 2 kB PNG that claims side x side pixels (400 megapixels): what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (side + 1) * 64, 9))
                     + chunk(b"IEND", b""))
    return path


def _latents(path: Path, scale: float = 1.0, **header: str) -> Path:
    meta = {"format": "ldm-latents", "format_version": "1", "scaling_factor": "0.18215", "latent_kind": "mean",
            "model": "", "vae_sha256": "", **header}
    save_file({"latents": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * scale}, str(path), metadata=meta)
    return path


def test_a_prompt_with_bytes_that_are_not_utf8(tmp_path, tiny_model):
    process = subprocess.run([sys.executable, "-m", "ldm_cli", "generate", b"a \xff\xfe circle", "--model", str(tiny_model),
                              "--steps", "1"], cwd=tmp_path, env=env(), capture_output=True, text=True, errors="replace")
    from conftest import Result

    assert_clean_failure(Result(process.returncode, process.stdout, process.stderr), 2, "not valid UTF-8", "\\xff\\xfe")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("chunk, needle", [
    ("[1, 2, 3]", "is JSON list, not an object"),
    ('{"prompt": "a cat", "seed": 1}', "lacks settings.negative_prompt"),
    ('{"prompt": "a cat", "seed": "one", "settings": {}}', "seed = 'one'"),
    ('{"prompt": "a", "seed": 1, "settings": {"negative_prompt": "", "steps": "20", "guidance": 7, "height": 64, '
     '"width": 64, "scheduler": null}, "model": {"spec": null}}', "settings.steps = '20'"),
    ('{"prompt": "a", "seed": 1, "settings": [], "model": 3}', "settings that is not a JSON object"),
])
def test_hostile_ldm_records_in_from(tmp_path, tiny_model, chunk, needle):
    image = _png(tmp_path / "made.png", ldm=chunk)
    before = snapshot(tmp_path)
    result = ldm("generate", "--from", image, "--model", tiny_model, cwd=tmp_path)
    assert_clean_failure(result, 2, "--from", needle)
    assert_untouched(before, tmp_path)


def test_an_unknown_a1111_sampler_is_named_not_replaced(tmp_path, tiny_model):
    image = _png(tmp_path / "a1111.png", parameters="a cat\nSteps: 3, Sampler: Heun Turbo 9000, CFG scale: 7, Seed: 5, Size: 64x64")
    result = ldm("generate", "--from", image, "--model", tiny_model, cwd=tmp_path)
    assert_clean_failure(result, 2, "'Heun Turbo 9000'", "would not replay", "--scheduler")
    result = ldm("generate", "--from", image, "--model", tiny_model, "--scheduler", "ddim", "--dry-run", cwd=tmp_path)
    assert result.code == 0, result.stderr


def test_info_escapes_control_characters(tmp_path):
    hostile = "a cat\x1b]0;pwned\x07\x1b[2J\r\u202eevil\nSteps: 3, Sampler: DDIM, CFG scale: 7, Seed: 5, Size: 64x64"
    image = _png(tmp_path / "hostile.png", parameters=hostile, ldm=json.dumps({"note": "\x1b[31mred\x9b"}))
    result = ldm("info", image, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert not any(c in result.stdout for c in "\x1b\x07\r\x9b\u202e")
    assert "a cat\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\u202eevil\nSteps: 3" in result.stdout
    assert "\\u001b[31mred" in result.stdout  # the JSON record is escaped by JSON itself


def test_an_error_quoting_a_hostile_file_name_is_escaped(tmp_path):
    name = tmp_path / "evil\x1b[2J.png"
    name.write_bytes(b"not a png")
    result = ldm("info", name, cwd=tmp_path)
    line = assert_clean_failure(result, 1, "evil\\x1b[2J.png")
    assert "\x1b" not in result.stderr, line


def test_info_and_train_vae_refuse_a_decompression_bomb(tmp_path):
    bomb = _bomb(tmp_path / "bomb.png")
    assert_clean_failure(ldm("info", bomb, cwd=tmp_path), 1, "decompression bomb")
    (tmp_path / "data").mkdir()
    _bomb(tmp_path / "data" / "b.png")
    result = ldm("train-vae", tmp_path / "data", "-o", tmp_path / "vae", "--steps", "1", cwd=tmp_path)
    assert_clean_failure(result, 1, "decompression bomb", "b.png")
    assert not (tmp_path / "vae").exists() or not any((tmp_path / "vae").iterdir())


def test_loras_that_do_not_fit_or_hold_nan(tmp_path, tiny_model):
    save_file({f"{TO_Q}.lora_A.weight": torch.zeros(4, 48), f"{TO_Q}.lora_B.weight": torch.zeros(32, 4)},
              str(tmp_path / "wrong.safetensors"))
    save_file({f"{TO_Q}.lora_A.weight": torch.full((4, 32), float("nan")), f"{TO_Q}.lora_B.weight": torch.zeros(32, 4)},
              str(tmp_path / "nan.safetensors"))
    before = snapshot(tmp_path)
    base = ("generate", "a red circle", "--model", tiny_model, "--steps", "1", "--seed", "1", "-o", tmp_path / "out")
    assert_clean_failure(ldm(*base, "--lora", tmp_path / "wrong.safetensors", cwd=tmp_path), 1, "wrong.safetensors")
    line = assert_clean_failure(ldm(*base, "--lora", tmp_path / "nan.safetensors", cwd=tmp_path), 1, "NaN/inf", "nan.safetensors")
    assert "sampler" not in line and "dtype" not in line
    line = assert_clean_failure(ldm(*base, "--lora", f"{tmp_path / 'nan.safetensors'}:abc", cwd=tmp_path), 2, "'abc' is not a number")
    assert "no such file" not in line
    assert_untouched(before, tmp_path)


def test_latent_headers_with_numbers_decoding_cannot_use(tmp_path, tiny_model):
    """One batch of four bad headers: each file is named with its own reason (no model is loaded)."""
    cases = {"nan.latent.safetensors": ({"scaling_factor": "nan"}, "scaling_factor nan"),
             "inf.latent.safetensors": ({"scaling_factor": "inf"}, "scaling_factor inf"),
             "shift.latent.safetensors": ({"shift_factor": "-inf"}, "shift_factor -inf"),
             "version.latent.safetensors": ({"format_version": "one"}, "format_version 'one'")}
    files = [_latents(tmp_path / name, **header) for name, (header, _) in cases.items()]
    before = snapshot(tmp_path)
    result = ldm("decode", *files, "--model", tiny_model, cwd=tmp_path)
    assert_clean_failure(result, 1, "none of the 4 latent files could be used", lines=5)
    for (name, (_, needle)), line in zip(cases.items(), result.error_lines):
        assert name in line and needle in line, line
    assert_untouched(before, tmp_path)


def test_init_latents_with_an_infinite_scaling_factor(tmp_path, tiny_model):
    latents = _latents(tmp_path / "bad.latent.safetensors", scaling_factor="inf")
    result = ldm("generate", "a cat", "--init-latents", latents, "--model", tiny_model, "--steps", "2", cwd=tmp_path)
    assert_clean_failure(result, 1, "scaling_factor inf")


def test_huge_latents_blame_the_latents_not_the_weights(tmp_path, tiny_model):
    latents = _latents(tmp_path / "huge.latent.safetensors", scale=1e30)
    line = assert_clean_failure(ldm("decode", latents, "--model", tiny_model, cwd=tmp_path), 1, "huge.latent.safetensors",
                                "scaled wrongly")
    assert "weights" not in line and "corrupt" not in line


def test_a_batch_with_bad_files_does_the_good_ones_and_names_every_bad_one(tmp_path, tiny_model, good_png):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        (folder / name).write_bytes(good_png.read_bytes())
    (folder / "b.png").write_bytes(b"junk")
    (folder / "d.png").write_bytes(good_png.read_bytes()[: len(good_png.read_bytes()) // 2])  # truncated
    result = ldm("encode", folder, "--model", tiny_model, "-o", tmp_path / "lat", cwd=tmp_path)
    line = assert_clean_failure(result, 1, "2 of 4 images were not encoded", "b.png", "d.png", lines=3)
    assert "the other 2 were" in line
    assert sorted(p.name for p in (tmp_path / "lat").iterdir()) == ["a.latent.safetensors", "c.latent.safetensors"]
    good = sorted((tmp_path / "lat").iterdir())
    bad = [_latents(tmp_path / "nan.latent.safetensors", scaling_factor="nan"),
           _latents(tmp_path / "huge.latent.safetensors", scale=1e30)]
    result = ldm("decode", good[0], *bad, good[1], "--model", tiny_model, "-o", tmp_path / "png", cwd=tmp_path)
    assert_clean_failure(result, 1, "2 of 4 latent files were not decoded", "nan.latent", "huge.latent", lines=3)
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["a.png", "c.png"]


def test_flags_are_named_as_given(tmp_path, tiny_model, good_png):
    assert_clean_failure(ldm("generate", "a cat", "--dim", "7", cwd=tmp_path), 2, "--dim 7")
    assert_clean_failure(ldm("encode", good_png, "--dim", "12", cwd=tmp_path), 2, "--dim 12")


def test_a_missing_model_exits_1_as_the_readme_says(tmp_path):
    result = ldm("generate", "a cat", "--model", tmp_path / "no-such-model", "--steps", "1", cwd=tmp_path)
    assert_clean_failure(result, 1, "no-such-model", "no such folder or file")


def test_dropped_words_are_the_users_own_words():
    from transformers import CLIPTokenizer

    from ldm_cli.models.loading import SD15_CONFIG_DIR
    from ldm_cli.pipeline.prompts.text import dropped_words

    tokenizer = CLIPTokenizer.from_pretrained(SD15_CONFIG_DIR / "tokenizer")
    prompt = " ".join(["red"] * 74) + ' A "Scarlet-Macaw",  on Mars!'
    assert dropped_words(tokenizer, prompt) == '"Scarlet-Macaw",  on Mars!'  # not 'scarlet - macaw ", on mars !'
    assert dropped_words(tokenizer, "a short prompt") == ""
