"""The shipped demo model (ldm_cli/assets/demo): it loads offline from the package, it is SD1-family,
and a handful of prompts, through the real `ldm generate`, make pictures the pixel checker accepts.

These guard the whole text-to-image path end to end (text encoder, guidance, the loop, several
schedulers, the VAE): a bug in any of them turns the pictures into something the checker rejects.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ldm_cli.demo.checker import read_image
from ldm_cli.models.loading import BUNDLED_MODELS, load_components, resolve_source

DEMO = BUNDLED_MODELS["demo"]
pytestmark = pytest.mark.skipif(not (DEMO / "model_index.json").exists(), reason="demo model not built (make demo-model)")

# prompt, seed, scheduler, expected (colour, background, shape): seed 1 each time, not picked. The
# model gets about 9 in 10 pictures fully right (benchmarks/results/demo_adherence.json), so any change
# to the pipeline that breaks text conditioning, guidance, a sampler or the VAE fails these.
CASES = [
    ("a large blue square on a yellow background", 1, None, ("blue", "yellow", "square")),
    ("a large yellow square on a black background", 1, "ddpm", ("yellow", "black", "square")),
    ("a small white triangle on a red background", 1, "euler", ("white", "red", "triangle")),
    ("a large green cross on a white background", 1, "dpm++2m", ("green", "white", "cross")),
    ("a large red circle on a blue background", 1, "euler-a", ("red", "blue", "circle")),
    ("a small black cross on a green background", 1, "unipc", ("black", "green", "cross")),
]


def test_demo_model_is_in_the_package_and_sd1_family():
    source = resolve_source("demo")
    assert source.kind == "bundled" and "ldm_cli" in source.path.parts
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size <= 30 * 1024 * 1024
    c = load_components(source, "cpu", offline=True)
    assert len(c.tokenizer) == 49408 and c.tokenizer.model_max_length == 77
    assert c.vae_scale_factor == 8 and c.vae.config.latent_channels == 4 and c.native_size == 128
    assert c.unet.config.cross_attention_dim == c.text_encoder.config.hidden_size
    assert c.unet.dtype == c.vae.dtype == c.text_encoder.dtype == __import__("torch").float32
    # The recipe's schedule: SD1's betas rescaled to (almost) zero terminal SNR, v-prediction, trailing steps.
    assert c.scheduler_config["_class_name"] == "DDIMScheduler"
    assert c.scheduler_config["prediction_type"] == "v_prediction" and c.scheduler_config["timestep_spacing"] == "trailing"
    assert len(c.scheduler_config["trained_betas"]) == c.scheduler_config["num_train_timesteps"] == 1000


def test_shipped_demo_model_is_what_the_recipe_builds():
    """`make demo-model` follows ldm_cli/demo/recipe.py: the shipped copy must record that same recipe."""
    from ldm_cli.demo.recipe import RECIPE
    from ldm_cli.demo.train_text_to_image import build_scheduler

    shipped = json.loads((DEMO / "recipe.json").read_text())
    assert shipped == json.loads(json.dumps(RECIPE.to_dict()))
    config = json.loads((DEMO / "scheduler" / "scheduler_config.json").read_text())
    assert config["trained_betas"] == list(build_scheduler(RECIPE.unet).config["trained_betas"])


@pytest.mark.parametrize("prompt,seed,scheduler,expected", CASES)
def test_demo_model_draws_what_the_prompt_says(ldm, tmp_path, monkeypatch, prompt, seed, scheduler, expected):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["generate", prompt, "--model", "demo", "--steps", "20", "--seed", seed, "--out", tmp_path / "x.png", "--json"]
    if scheduler:
        args += ["--scheduler", scheduler]
    result = ldm(*args)
    assert result.code == 0, result.stderr
    with Image.open(tmp_path / "x.png") as image:
        assert image.size == (128, 128)
        reading = read_image(np.asarray(image.convert("RGB")))
    assert (reading.colour, reading.background, reading.shape) == expected, reading
    assert json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("scheduler", ["pndm", "ddim", "euler", "euler-a", "dpm++2m-karras", "unipc"])
def test_demo_model_matches_stable_diffusion_pipeline(scheduler):
    """The oracle on the shipped model's own config (v-prediction, rescaled betas, trailing steps)."""
    import torch

    from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
    from ldm_cli.reference import reference_pipeline

    c = load_components(resolve_source("demo"), "cpu", torch.float32, offline=True)
    prompt = "a small red circle on a blue background"
    reference = reference_pipeline(c, scheduler)(
        prompt, num_inference_steps=8, guidance_scale=7.5, generator=torch.Generator().manual_seed(5), output_type="np"
    ).images[0]
    ours = TextToImage(c, "cpu", torch.float32).generate(prompt, 5, SamplingPlan(128, 128, 8, 7.5, scheduler, "")).image
    assert np.abs(reference - ours[0].permute(1, 2, 0).numpy()).max() <= 1e-4


def test_samplers_that_fail_near_zero_terminal_snr_are_named_before_they_run(ldm, tmp_path):
    """PNDM draws washed-out pictures with this model's schedule (benchmarks/demo_samplers.py): say so."""
    from ldm_cli.models.loading import SD15_CONFIG_DIR
    from ldm_cli.pipeline.loop.schedulers import sampler_warning

    result = ldm("generate", "a red circle", "--model", "demo", "--scheduler", "pndm", "--steps", "2", "--out", tmp_path / "a.png")
    assert result.code == 0 and "warning: --scheduler pndm draws washed-out pictures" in result.stderr
    assert "use ddim" in result.stderr and (tmp_path / "a.png").exists()
    result = ldm("generate", "a red circle", "--model", "demo", "--steps", "2", "--out", tmp_path / "b.png")
    assert result.code == 0 and "washed-out" not in result.stderr
    demo = json.loads((DEMO / "scheduler" / "scheduler_config.json").read_text())
    assert sampler_warning("heun", 20, demo) and not sampler_warning("heun", 50, demo)
    sd1 = json.loads((SD15_CONFIG_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert sampler_warning("pndm", 20, sd1) is None  # SD1's own schedule keeps 6.8% of the signal: PNDM is fine


def test_demo_model_inpaints_a_red_circle_into_the_masked_centre_and_keeps_the_rest(ldm, tmp_path):
    """The README's before/mask/after triple: a flat blue picture, its centre masked, "a red circle"."""
    from ldm_cli.demo.inpaint_scene import MASK_BOX, write_scene
    from ldm_cli.pipeline.starts import mask_ops

    before, mask_path = write_scene(tmp_path)
    result = ldm("generate", "a red circle", "--model", "demo", "--init-image", before, "--mask", mask_path,
                 "--seed", "1", "--steps", "20", "--out", "after.png")
    assert result.code == 0, result.stderr
    after = np.asarray(Image.open(tmp_path / "after.png").convert("RGB"))
    picture, mask = np.asarray(Image.open(before)), np.asarray(Image.open(mask_path))
    x1, y1, x2, y2 = MASK_BOX
    inside = read_image(after[y1:y2, x1:x2])
    assert (inside.colour, inside.shape, inside.background) == ("red", "circle", "blue")
    whole = read_image(after)
    assert (whole.colour, whole.shape, whole.background) == ("red", "circle", "blue")
    untouched = mask_ops.overlay_mask(mask_ops.gaussian_blur(mask, 4), only_masked=False) == 0
    assert untouched.mean() > 0.5 and np.array_equal(after[untouched], picture[untouched])
