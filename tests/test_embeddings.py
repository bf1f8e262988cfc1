"""Textual inversion: the files people share are read, installed as diffusers installs them (same
pixels as its pipeline after load_textual_inversion), refused with a clear line when made for
another model family, and recorded in the JSON record and as A1111's `TI hashes`."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ldm_cli.errors import ModelError
from ldm_cli.files.metadata import parse_a1111
from ldm_cli.models.embeddings import Embedding, install, read_embedding
from ldm_cli.models.loading import load_components, resolve_source
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.reference import reference_pipeline

WIDTH = 32  # the tiny model's text width


@pytest.fixture(scope="module")
def vectors():
    return torch.randn(3, WIDTH, generator=torch.Generator().manual_seed(5)) * 0.5


@pytest.fixture
def files(tmp_path, vectors):
    """The same 3 vectors in each format people share."""
    out = {
        "a1111": tmp_path / "a1111.safetensors", "flat": tmp_path / "flatstyle_v2.safetensors",
        "diffusers": tmp_path / "learned_embeds.safetensors", "pickle": tmp_path / "vintage_look.pt",
    }
    save_file({"emb_params": vectors}, str(out["a1111"]))
    save_file({"string_to_param.*": vectors}, str(out["flat"]))
    save_file({"<my-concept>": vectors}, str(out["diffusers"]))
    torch.save({"string_to_token": {"*": torch.tensor(265)}, "string_to_param": {"*": vectors}, "name": "old", "step": 10},
               str(out["pickle"]))
    return out


def test_every_format_gives_the_same_vectors(files, vectors):
    for kind, path in files.items():
        got, _name = read_embedding(path, allow_pickle=True)
        assert torch.equal(got, vectors), kind
    assert read_embedding(files["diffusers"])[1] == "<my-concept>"
    single = files["a1111"].with_name("one.safetensors")
    save_file({"tok": vectors[0]}, str(single))  # a diffusers single vector: [D]
    assert read_embedding(single)[0].shape == (1, WIDTH)


def test_pixels_equal_diffusers_after_load_textual_inversion(tiny_model, files):
    prompt, negative = "a photo of mystyle, detailed", "mystyle blurry"
    plan = SamplingPlan(64, 64, 3, 7.5, "euler", negative)
    ours_components = load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)
    vectors, _ = read_embedding(files["a1111"])
    embedding = Embedding(files["a1111"], "mystyle", vectors)
    install(ours_components.tokenizer, ours_components.text_encoder, [embedding])
    generator = TextToImage(ours_components, "cpu", torch.float32)
    from ldm_cli.models.embeddings import expand_prompt

    generator.text_for_clip = lambda text: expand_prompt(text, [embedding])
    ours = generator.generate(prompt, 11, plan).image[0].permute(1, 2, 0).numpy()

    theirs_components = load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)
    pipe = reference_pipeline(theirs_components, "euler")
    pipe.load_textual_inversion(str(files["a1111"]), token="mystyle")
    theirs = pipe(prompt, negative_prompt=negative, num_inference_steps=3, guidance_scale=7.5,
                  generator=torch.Generator().manual_seed(11), output_type="np", height=64, width=64).images[0]
    assert np.abs(ours - theirs).max() <= 1e-4
    plain = TextToImage(load_components(resolve_source(str(tiny_model)), "cpu", torch.float32), "cpu", torch.float32)
    assert np.abs(plain.generate(prompt, 11, plan).image[0].permute(1, 2, 0).numpy() - ours).max() > 1e-2


@pytest.mark.parametrize("width, family", [(768, "SD1.x"), (1024, "SD2.x")])
def test_vectors_of_another_width_are_refused_naming_the_family(ldm, tiny_model, tmp_path, width, family):
    save_file({"emb_params": torch.zeros(2, width)}, str(tmp_path / "wide.safetensors"))
    result = ldm("generate", "a wide cat", "--model", tiny_model, "--steps", "1", "--embedding", tmp_path / "wide.safetensors")
    assert result.code == 1 and family in result.stderr and "internal error" not in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) > 0 and not list(tmp_path.glob("outputs/*.png"))


def test_an_sdxl_embedding_is_refused(tmp_path):
    save_file({"clip_g": torch.zeros(2, 1280), "clip_l": torch.zeros(2, 768)}, str(tmp_path / "xl.safetensors"))
    with pytest.raises(ModelError, match="SDXL"):
        read_embedding(tmp_path / "xl.safetensors")


def test_pickle_needs_allow_pickle(ldm, tiny_model, files):
    result = ldm("generate", "a cat", "--model", tiny_model, "--embedding", files["pickle"])
    assert result.code == 2 and "--allow-pickle" in result.stderr
    ok = ldm("generate", "a vintage_look cat", "--model", tiny_model, "--steps", "1", "--embedding", files["pickle"], "--allow-pickle")
    assert ok.code == 0, ok.stderr


def test_a_token_that_is_a_clip_word_still_works_and_leaves_the_word_alone(tiny_model, files, vectors):
    """'style' is a CLIP word piece: the embedding is entered under a private name, and the prompt is
    rewritten to it, so the word 'style' elsewhere keeps its own vector."""
    from ldm_cli.models.embeddings import expand_prompt

    components = load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)
    table_before = components.text_encoder.get_input_embeddings().weight.detach().clone()
    embedding = Embedding(files["a1111"], "style", vectors)
    install(components.tokenizer, components.text_encoder, [embedding])
    table = components.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[: table_before.shape[0]], table_before)
    text = expand_prompt("a Style cat, stylish", [embedding])
    ids = components.tokenizer(text).input_ids
    added = [components.tokenizer.convert_tokens_to_ids(t) for t in embedding.tokens]
    assert [i for i in ids if i >= table_before.shape[0]] == added
    assert torch.equal(table[added], vectors)


def test_two_embeddings_with_one_token_are_refused(ldm, tiny_model, files):
    result = ldm("generate", "a mystyle cat", "--model", tiny_model, "--steps", "1", "--embedding", f"{files['a1111']}:mystyle",
                 "--embedding", f"{files['flat']}:MyStyle")
    assert result.code == 1 and "'MyStyle'" in result.stderr and "FILE:TOKEN" in result.stderr


def test_cli_records_the_embedding(ldm, tiny_model, files, tmp_path):
    common = ("--model", tiny_model, "--steps", "2", "--seed", "3", "--scheduler", "euler")
    result = ldm("generate", "a photo of mystyle", *common, "--embedding", f"{files['a1111']}:mystyle", "--out", "e.png")
    assert result.code == 0, result.stderr
    assert ldm("generate", "a photo of mystyle", *common, "--out", "plain.png").code == 0
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "e.png")), np.asarray(Image.open(tmp_path / "plain.png")))
    text = Image.open(tmp_path / "e.png").text
    digest = hashlib.sha256(files["a1111"].read_bytes()).hexdigest()
    assert parse_a1111(text["parameters"])["fields"]["TI hashes"] == f"mystyle: {digest[:12]}"
    (entry,) = json.loads(text["ldm"])["networks"]["embeddings"]
    assert entry == {"file": str(files["a1111"].resolve()), "token": "mystyle", "vectors": 3, "source": "flag",
                     "sha256": digest, "a1111_hash": digest[:12]}


def test_the_token_defaults_to_the_file_stem(ldm, tiny_model, files, tmp_path):
    common = ("--model", tiny_model, "--steps", "2", "--seed", "3")
    assert ldm("generate", "a flatstyle_v2 dog", *common, "--embedding", files["flat"], "--out", "stem.png").code == 0
    assert ldm("generate", "a flatstyle_v2 dog", *common, "--embedding", f"{files['flat']}:flatstyle_v2", "--out", "named.png").code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "stem.png")), np.asarray(Image.open(tmp_path / "named.png")))


def test_embeddings_dir_loads_only_the_ones_a_prompt_names(ldm, tiny_model, files, tmp_path, vectors):
    folder = tmp_path / "embeddings"
    (folder / "sub").mkdir(parents=True)
    save_file({"emb_params": vectors}, str(folder / "sub" / "EasyNeg.safetensors"))
    save_file({"emb_params": torch.zeros(2, 768)}, str(folder / "unused.safetensors"))  # would be refused if loaded
    common = ("--model", tiny_model, "--steps", "2", "--seed", "3", "--scheduler", "euler")
    result = ldm("generate", "a cat", "--neg", "easyneg, blurry", *common, "--embeddings-dir", folder, "--out", "d.png")
    assert result.code == 0, result.stderr
    flag = ldm("generate", "a cat", "--neg", "easyneg, blurry", *common, "--embedding",
               f"{folder / 'sub' / 'EasyNeg.safetensors'}:EasyNeg", "--out", "f.png")
    assert flag.code == 0, flag.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), np.asarray(Image.open(tmp_path / "f.png")))
    (entry,) = json.loads(Image.open(tmp_path / "d.png").text["ldm"])["networks"]["embeddings"]
    assert entry["token"] == "EasyNeg" and entry["source"] == "dir"
    plain = ldm("generate", "a cat", *common, "--embeddings-dir", folder, "--out", "p.png")
    assert plain.code == 0 and "networks" not in json.loads(Image.open(tmp_path / "p.png").text["ldm"])


def test_embeddings_dir_defaults_to_the_environment(ldm, tiny_model, files, tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_EMBEDDINGS_DIR", str(files["a1111"].parent))
    result = ldm("generate", "an a1111 cat", "--model", tiny_model, "--steps", "1", "--out", "env.png")
    assert result.code == 0, result.stderr
    assert "TI hashes" in Image.open(tmp_path / "env.png").text["parameters"]


def test_from_reapplies_embeddings_and_names_those_it_cannot_find(ldm, tiny_model, files, tmp_path):
    common = ("--model", tiny_model, "--steps", "2", "--seed", "3")
    assert ldm("generate", "a photo of mystyle", *common, "--embedding", f"{files['a1111']}:mystyle", "--out", "e.png").code == 0
    again = ldm("generate", "--from", "e.png", "--out", "again.png")
    assert again.code == 0 and "warning" not in again.stderr, again.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "e.png")), np.asarray(Image.open(tmp_path / "again.png")))
    files["a1111"].rename(tmp_path / "elsewhere.safetensors")
    lost = ldm("generate", "--from", "e.png", "--out", "lost.png")
    assert lost.code == 0 and "embeddings it used cannot be found" in lost.stderr and "mystyle" in lost.stderr


def test_from_an_a1111_png_names_embeddings_it_cannot_find(ldm, tiny_model, tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nNegative prompt: easynegative\nSteps: 1, Sampler: Euler, CFG scale: 7, Seed: 1, "
                                'Size: 64x64, TI hashes: "easynegative: c74b4e810b03"')
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "theirs.png", pnginfo=info)
    result = ldm("generate", "--from", "theirs.png", "--model", tiny_model, "--out", "x.png")
    assert result.code == 0 and "easynegative" in result.stderr and "TI hashes" in result.stderr
