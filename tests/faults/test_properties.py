"""Property tests: whatever the arguments, the PNG metadata or the latent header, `ldm` answers with
an exit code and a line, never an internal error or a traceback.

The commands run in-process (the same `main` the console script calls) so that hypothesis can try
hundreds of inputs quickly; no example loads a model for real (generate runs --dry-run, encode and
decode get a --model that does not exist, finetune runs --check).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NO_MODEL = "/nonexistent/ldm-model"

# argv cannot hold NUL; everything else can, undecodable bytes included (as surrogates)
arg_text = st.one_of(
    st.text(st.characters(blacklist_characters="\x00"), max_size=12),
    st.text(st.characters(blacklist_characters="\x00"), max_size=6).map(lambda s: s + "\udcff"),
)
number_text = st.one_of(
    st.integers(-10, 5000).map(str), st.sampled_from(["nan", "inf", "-inf", "1e400", "0", "-0", "2**64", "18446744073709551616"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr), arg_text,
)


def run(args) -> tuple[int, str]:
    from ldm_cli.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


def assert_answered(code: int, stderr: str, args) -> None:
    assert code in (0, 1, 2, 130), (code, args, stderr[-1000:])
    assert "internal error" not in stderr and "Traceback" not in stderr, (args, stderr[-1000:])
    if code:
        assert any(line.startswith("ldm: error:") for line in stderr.splitlines()), (args, stderr[-1000:])


@pytest.fixture(scope="module")
def place(tmp_path_factory, tiny_model):
    """A working folder with a good image, a junk file, a folder, good and bad latents; cwd for the examples."""
    root = tmp_path_factory.mktemp("properties")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(root / "good.png")
    (root / "junk.png").write_bytes(b"junk")
    (root / "folder").mkdir()
    save_file({"latents": torch.zeros(1, 4, 8, 8)}, str(root / "good.latent.safetensors"),
              metadata={"format": "ldm-latents", "scaling_factor": "0.18215", "latent_kind": "mean", "model": "", "vae_sha256": ""})
    (root / "junk.latent.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    (root / "data").mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (i * 90, 40, 40)).save(root / "data" / f"{i}.png")
        (root / "data" / f"{i}.txt").write_text(f"a picture {i}")
    previous = os.getcwd()
    os.chdir(root)
    yield root, tiny_model
    os.chdir(previous)


def flags(options: dict):
    """Any subset of these flags, each with a value from its strategy (None: a bare switch)."""
    names = sorted(options)

    @st.composite
    def build(draw):
        argv = []
        for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=6)):
            value = options[name]
            argv += [name] if value is None else [name, draw(value)]
        return argv

    return build()


GENERATE = {"--steps": number_text, "--g": number_text, "--seed": number_text, "--dim": number_text, "--height": number_text,
            "--width": number_text, "--neg": arg_text, "--scheduler": st.one_of(arg_text, st.sampled_from(["ddim", "euler"])),
            "-n": number_text, "--every": number_text, "--intermediates": arg_text, "--strength": number_text,
            "--resize": st.sampled_from(["crop", "pad", "squash", ""]), "--lora": st.sampled_from(["good.png", "x.safetensors:abc", "good.png:nan", ":"]),
            "--init-image": st.sampled_from(["good.png", "junk.png", "folder", "missing.png"]),
            "--init-latents": st.sampled_from(["good.latent.safetensors", "junk.latent.safetensors", "good.png"]),
            "--from": st.sampled_from(["good.png", "junk.png", "folder", "missing.png"]), "-o": arg_text,
            "--device": st.sampled_from(["cpu", "cuda", "mps", "tpu", ""]), "--dtype": st.sampled_from(["fp32", "fp16", "bf16", "int8"]),
            "--save-intermediates": None, "--offload": None, "--compile": None, "--json": None}


@SETTINGS
@given(prompt=st.one_of(arg_text, st.none()), argv=flags(GENERATE))
def test_generate_arguments(place, prompt, argv):
    root, model = place
    args = ["generate", *([prompt] if prompt is not None else []), *argv, "--dry-run", "--model", model]
    assert_answered(*run(args), args)


ENCODE = {"--dim": number_text, "--height": number_text, "--width": number_text, "--seed": number_text,
          "--resize": st.one_of(arg_text, st.sampled_from(["crop", "pad", "stretch"])), "-o": arg_text,
          "--sample": None, "--tile": None, "--report": None, "--visualize": None, "--json": None,
          "--device": st.sampled_from(["cpu", "cuda:7", "x"]), "--dtype": st.sampled_from(["fp32", "fp8"])}


@SETTINGS
@given(inputs=st.lists(st.sampled_from(["good.png", "junk.png", "folder", "missing.png", "data"]), min_size=0, max_size=3),
       argv=flags(ENCODE))
def test_encode_arguments(place, inputs, argv):
    args = ["encode", *inputs, *argv, "--model", NO_MODEL]
    assert_answered(*run(args), args)


DECODE = {"-o": arg_text, "--tile": None, "--allow-pickle": None, "--json": None, "--device": st.sampled_from(["cpu", "?"])}


@SETTINGS
@given(inputs=st.lists(st.sampled_from(["good.latent.safetensors", "junk.latent.safetensors", "good.png", "folder", "nope.pt"]),
                       min_size=0, max_size=3), argv=flags(DECODE))
def test_decode_arguments(place, inputs, argv):
    args = ["decode", *inputs, *argv, "--model", NO_MODEL]
    assert_answered(*run(args), args)


FINETUNE = {"--rank": number_text, "--alpha": number_text, "--lr": number_text, "--resolution": number_text,
            "--batch-size": number_text, "--grad-accum": number_text, "--max-steps": number_text, "--epochs": number_text,
            "--method": st.sampled_from(["lora", "full", "dreambooth"]), "--crop": arg_text, "--lr-schedule": arg_text,
            "--mixed-precision": st.sampled_from(["no", "fp16", "bf16", "fp64"]), "--caption-dropout": number_text,
            "--noise-offset": number_text, "--ema-decay": number_text, "--snr-gamma": number_text, "--seed": number_text,
            "--resume": st.one_of(arg_text, st.just("latest")), "--validation-prompt": arg_text, "-o": arg_text,
            "--keep": number_text, "--checkpoint-every": number_text, "--strict": None, "--flip": None, "--no-buckets": None}


@SETTINGS
@given(data=st.sampled_from(["data", "folder", "missing", "good.png"]), argv=flags(FINETUNE))
def test_finetune_arguments(place, data, argv):
    args = ["finetune", data, *argv, "--check", "--model", NO_MODEL]
    assert_answered(*run(args), args)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)
# records shaped like ours, with any field missing, retyped or hostile
record_like = st.fixed_dictionaries({}, optional={
    "prompt": st.one_of(st.text(max_size=20), json_values), "seed": st.one_of(st.integers(-5, 2**70), json_values),
    "command": st.one_of(st.just("generate"), json_values), "img2img": json_values,
    "settings": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        k: st.one_of(st.integers(-10, 5000), st.floats(), json_values) for k in
        ("negative_prompt", "steps", "guidance", "height", "width", "scheduler")})),
    "model": st.one_of(json_values, st.fixed_dictionaries({}, optional={"spec": json_values, "revision": json_values})),
})
parameters_text = st.one_of(
    st.text(max_size=80),
    st.builds(lambda p, f: f"{p}\n{f}", st.text(max_size=20),
              st.lists(st.tuples(st.sampled_from(["Steps", "Sampler", "CFG scale", "Seed", "Size", "Model"]), st.text(max_size=12)),
                       max_size=6).map(lambda pairs: ", ".join(f"{k}: {v}" for k, v in pairs))),
)


@SETTINGS
@given(ldm_chunk=st.one_of(st.none(), record_like.map(json.dumps), json_values.map(json.dumps), st.text(max_size=30)),
       parameters=st.one_of(st.none(), parameters_text))
def test_png_metadata(place, ldm_chunk, parameters):
    root, model = place
    info = PngImagePlugin.PngInfo()
    if ldm_chunk is not None:
        info.add_itxt("ldm", ldm_chunk)
    if parameters is not None:
        info.add_itxt("parameters", parameters)
    Image.new("RGB", (8, 8)).save(root / "made.png", pnginfo=info)
    for args in (["info", "made.png"], ["info", "made.png", "--json"], ["generate", "--from", "made.png", "--dry-run", "--model", model]):
        code, stderr = run(args)
        assert_answered(code, stderr, (args, ldm_chunk, parameters))


HEADER_FIELDS = ["format", "format_version", "scaling_factor", "shift_factor", "latent_kind", "seed", "model", "vae_sha256",
                 "source_size", "tiled", "scaling_applied", "source_bytes"]


@pytest.fixture(scope="module")
def tiny_vae(tiny_model):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(tiny_model / "vae")


@SETTINGS
@given(header=st.dictionaries(st.sampled_from(HEADER_FIELDS), st.one_of(number_text, st.sampled_from(["ldm-latents", "true", ""]))),
       shape=st.lists(st.integers(0, 9), min_size=1, max_size=5), scale=st.sampled_from([1.0, 1e30, float("nan"), 0.0]),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.int64]))
def test_latent_metadata(place, tiny_vae, header, shape, scale, dtype):
    from ldm_cli.errors import InputFileError
    from ldm_cli.files.latent_files import load_latents
    from ldm_cli.pipeline.codec.decode_latents import check_fits

    root, _ = place
    header = {k: v.encode("utf-8", "replace").decode() for k, v in header.items()}  # safetensors metadata is UTF-8: no surrogates
    tensor = (torch.ones(shape) * scale).to(dtype) if not (dtype == torch.int64 and not math.isfinite(scale)) else torch.ones(shape, dtype=dtype)
    save_file({"latents": tensor}, str(root / "made.latent.safetensors"), metadata=header)
    try:
        latent_file = load_latents(root / "made.latent.safetensors")
        check_fits(latent_file, tiny_vae, "tiny", "")
    except InputFileError:
        pass
