"""img2img (SDEdit): parity with diffusers' StableDiffusionImg2ImgPipeline, --init-latents, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ldm_cli.reference import reference_pipeline
from ldm_cli.pipeline.generation import SamplingPlan
from ldm_cli.files.image_io import load_image
from ldm_cli.pipeline.starts.img2img import ImageToImage, InitSource
from ldm_cli.files.latent_files import LatentHeader, load_latents, save_latents
from ldm_cli.models.loading import load_components, resolve_source

PROMPT = "a red square on a blue field"


@pytest.fixture(scope="module")
def components(tiny_model):
    return load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)


def reference(components, scheduler_name, image, strength, seed, steps=5, guidance=7.5):
    pipe = reference_pipeline(components, scheduler_name, img2img=True)
    out = pipe(PROMPT, image=image, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
               generator=torch.Generator().manual_seed(seed), output_type="np")
    return out.images[0]  # [H, W, 3] float in [0, 1]


def ours(components, scheduler_name, init, seed, steps=5, guidance=7.5):
    width, height = init.size
    plan = SamplingPlan(height, width, steps, guidance, scheduler_name)
    image = ImageToImage(components, "cpu", torch.float32, init).generate(PROMPT, seed, plan).image
    return image[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("scheduler_name,strength", [("pndm", 0.75), ("euler-a", 0.6), ("heun", 0.8), ("dpm++2m", 0.5)])
def test_matches_img2img_pipeline(components, init_png, scheduler_name, strength):
    init = InitSource(init_png, strength, image=load_image(init_png))
    ref = reference(components, scheduler_name, Image.open(init_png), strength, seed=11)
    mine = ours(components, scheduler_name, init, seed=11)
    assert ref.shape == mine.shape == (64, 64, 3)
    assert np.abs(ref - mine).max() <= 1e-4


def test_init_latents_match_the_pipeline_given_latents(components, init_png, tmp_path):
    from ldm_cli.pipeline.codec import vae_ops
    from ldm_cli.files.image_io import to_tensor

    encoding = vae_ops.encode(components.vae, to_tensor(load_image(init_png).pixels))
    header = LatentHeader(scaling_factor=0.18215, latent_kind="mean", model="tiny", vae_sha256="")
    path = save_latents(encoding.latents, header, tmp_path / "init.latent.safetensors")
    init = InitSource(path, 0.7, latent_file=load_latents(path))
    ref = reference(components, "ddim", encoding.latents.clone(), 0.7, seed=5)
    mine = ours(components, "ddim", init, seed=5)
    assert np.abs(ref - mine).max() <= 1e-4


def test_strength_and_seed_change_the_result(components, init_png):
    """Guards the oracle: the strength and the seed must both matter."""
    image = load_image(init_png)
    a = ours(components, "ddim", InitSource(init_png, 0.4, image=image), seed=1)
    b = ours(components, "ddim", InitSource(init_png, 0.9, image=image), seed=1)
    c = ours(components, "ddim", InitSource(init_png, 0.4, image=image), seed=2)
    assert np.abs(a - b).max() > 1e-3 and np.abs(a - c).max() > 1e-3


def test_cli_img2img_writes_the_pipeline_image_and_records_it(ldm, components, tiny_model, init_png, tmp_path):
    result = ldm("generate", PROMPT, "--init-image", init_png, "--strength", "0.6", "--steps", "5", "--seed", "4",
                 "--scheduler", "ddim", "--model", tiny_model, "--json", "--out", "i2i.png")
    assert result.code == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["img2img"]["strength"] == 0.6 and line["img2img"]["init_image"] == str(init_png)
    written = np.asarray(Image.open(tmp_path / "i2i.png").convert("RGB"))
    ref = reference(components, "ddim", Image.open(init_png), 0.6, seed=4)
    assert np.abs(written.astype(int) - np.round(ref * 255).astype(int)).max() <= 1
    record = json.loads(Image.open(tmp_path / "i2i.png").text["ldm"])
    assert record["img2img"]["sha256"] and record["settings"]["width"] == 64


def test_from_an_img2img_png_reruns_it_from_the_same_init_image(ldm, tiny_model, init_png, tmp_path):
    args = ("--steps", "4", "--seed", "9", "--model", tiny_model)
    assert ldm("generate", PROMPT, "--init-image", init_png, "--strength", "0.6", *args, "--out", "a.png").code == 0
    assert "Denoising strength: 0.6" in Image.open(tmp_path / "a.png").text["parameters"]
    result = ldm("generate", "--from", "a.png", "--out", "b.png")
    assert result.code == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    assert json.loads(Image.open(tmp_path / "b.png").text["ldm"])["img2img"]["strength"] == 0.6


def test_cli_img2img_resizes_the_init_image_to_the_flags(ldm, tiny_model, tmp_path):
    Image.new("RGB", (100, 60), (10, 200, 30)).save(tmp_path / "wide.png")
    result = ldm("generate", "a field", "--init-image", "wide.png", "--dim", "64", "--resize", "pad", "--steps", "2",
                 "--seed", "1", "--model", tiny_model, "--json", "--out", "p.png")
    assert result.code == 0, result.stderr
    assert Image.open(tmp_path / "p.png").size == (64, 64)
    assert json.loads(result.stdout)["img2img"]["preprocessing"] == ["resized 100x60 to 64x64 by pad"]


def test_cli_init_latents_from_encode(ldm, tiny_model, init_png, tmp_path):
    assert ldm("encode", init_png, "--model", tiny_model, "-o", "z.latent.safetensors").code == 0
    result = ldm("generate", PROMPT, "--init-latents", "z.latent.safetensors", "--steps", "3", "--seed", "2",
                 "--model", tiny_model, "--out", "from-latents.png")
    assert result.code == 0, result.stderr
    assert Image.open(tmp_path / "from-latents.png").size == (64, 64)


@pytest.mark.parametrize("args,needle", [
    (["--strength", "0.5"], "only used with --init-image"),
    (["--init-image", "init.png", "--strength", "0"], "--strength 0.0"),
    (["--init-image", "init.png", "--strength", "1.5"], "at most 1"),
    (["--init-image", "init.png", "--strength", "nan"], "--strength nan"),
    (["--init-image", "init.png", "--strength", "0.1", "--steps", "5"], "runs no denoising step"),
    (["--init-image", "init.png", "--init-latents", "z.latent.safetensors"], "not both"),
    (["--init-image", "missing.png"], "missing.png: no such file"),
    (["--init-image", "init.png", "--resize", "squash"], "--resize 'squash'"),
    (["--resize", "pad"], "only used with --init-image"),
    (["--init-latents", "z.latent.safetensors", "--height", "128"], "--init-latents fixes the size"),
])
def test_bad_img2img_flags_exit_2_before_the_model_loads(ldm, tmp_path, args, needle):
    Image.new("RGB", (64, 64)).save(tmp_path / "init.png")
    save_latents(torch.zeros(1, 4, 8, 8), LatentHeader(0.18215, "mean", "m", ""), tmp_path / "z.latent.safetensors")
    result = ldm("generate", "a cat", *args, "--model", "no/such-model-here")
    assert result.code == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_corrupt_init_image_is_named_before_the_model_loads(ldm, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    result = ldm("generate", "a cat", "--init-image", "broken.png", "--model", "no/such-model-here")
    assert result.code == 1 and "broken.png" in result.stderr and "corrupt" in result.stderr
    assert "loading" not in result.stderr


def test_init_latents_for_another_vae_are_refused(ldm, tiny_model, tmp_path):
    header = LatentHeader(scaling_factor=0.13025, latent_kind="mean", model="sdxl", vae_sha256="")
    save_latents(torch.zeros(1, 4, 8, 8), header, tmp_path / "xl.latent.safetensors")
    result = ldm("generate", "a cat", "--init-latents", "xl.latent.safetensors", "--steps", "2", "--model", tiny_model)
    assert result.code == 1 and "scaling factor 0.13025" in result.stderr
    assert not list(tmp_path.glob("outputs/*.png"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strength=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["x", "", "1e400", "-0"])),
       steps=st.integers(1, 60))
def test_strength_property(ldm, tmp_path, strength, steps):
    """Every --strength either passes validation (then the missing model stops the run, exit 1)
    or exits 2 with one line: valid means 0 < s <= 1 and int(steps * s) >= 1."""
    if not (tmp_path / "init.png").exists():
        Image.new("RGB", (64, 64)).save(tmp_path / "init.png")
    result = ldm("generate", "a cat", "--init-image", "init.png", f"--strength={strength}", "--steps", steps,
                 "--model", "/nonexistent/model-folder")
    try:
        value = float(str(strength))
    except ValueError:
        value = None
    valid = value is not None and 0 < value <= 1 and int(steps * value) >= 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    if valid:
        assert result.code == 1 and "no such folder or file" in lines[-1], result.stderr
    else:
        assert result.code == 2 and len(lines) == 1 and lines[0].startswith("ldm: error: "), result.stderr
