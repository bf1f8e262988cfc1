"""Variation seeds, ENSD, hires fix and schedule types against diffusers given the same noise, and each
recipe field replayed through --from (ldm's record and an A1111 infotext)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from ldm_cli.files.metadata import parse_a1111, read_png_metadata
from ldm_cli.models.loading import load_components, resolve_source
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.pipeline.starts.hires import HiresPlan
from ldm_cli.pipeline.loop.noise import slerp
from ldm_cli.reference import reference_pipeline


@pytest.fixture(scope="module")
def components(tiny_model):
    return load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)


def a1111_slerp(val, low, high):
    """modules/rng.py, written out again."""
    ln, hn = low / low.norm(dim=1, keepdim=True), high / high.norm(dim=1, keepdim=True)
    dot = (ln * hn).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    return (torch.sin((1 - val) * omega) / torch.sin(omega))[:, None] * low + (torch.sin(val * omega) / torch.sin(omega))[:, None] * high


def test_slerp_is_a1111s():
    a, b = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.randn(4, 8, 8)
    for val in (0.0, 0.3, 1.0):
        torch.testing.assert_close(slerp(val, a, b), a1111_slerp(val, a, b), rtol=0, atol=0)
    assert torch.equal(slerp(1.0, a, b), b) and torch.equal(slerp(0.0, a, b), a)
    torch.testing.assert_close(slerp(0.25, a, a * 1.0), a * 0.25 + a * 0.75)  # A1111's near-parallel branch


def ours(components, seed=5, scheduler="ddim", steps=4, **plan):
    p = SamplingPlan(64, 64, steps, 7.5, scheduler, "", **plan)
    return TextToImage(components, "cpu", torch.float32).generate("a red circle", seed, p).image[0].permute(1, 2, 0).numpy()


def diffusers_with(components, latents, generator_seed, scheduler="ddim", steps=4):
    pipe = reference_pipeline(components, scheduler)
    out = pipe("a red circle", num_inference_steps=steps, guidance_scale=7.5, latents=latents, output_type="np",
               generator=torch.Generator().manual_seed(generator_seed), height=64, width=64)
    return out.images[0]


def noise(seed):
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_variation_seed_matches_diffusers_given_the_slerped_noise(components):
    varied = a1111_slerp(0.4, noise(5)[0], noise(9)[0])[None]
    mine = ours(components, variation_seed=9, variation_strength=0.4)
    assert np.abs(mine - diffusers_with(components, varied, 5)).max() <= 1e-4


def test_variation_strength_0_is_the_seed_and_1_the_variation_seed(components):
    assert np.array_equal(ours(components, variation_seed=9, variation_strength=0.0), ours(components))
    assert np.array_equal(ours(components, variation_seed=9, variation_strength=1.0), ours(components, seed=9))


def test_ensd_reseeds_the_step_noise_of_ancestral_samplers(components):
    mine = ours(components, scheduler="euler-a", eta_noise_seed_delta=31337)
    theirs = diffusers_with(components, noise(5), 5 + 31337, scheduler="euler-a")
    assert np.abs(mine - theirs).max() <= 1e-4
    assert np.abs(mine - ours(components, scheduler="euler-a")).max() > 1e-3
    assert np.array_equal(ours(components, eta_noise_seed_delta=31337), ours(components))  # DDIM draws no step noise


@pytest.mark.parametrize("schedule_type, overrides", [("karras", {"use_karras_sigmas": True}),
                                                      ("sgm-uniform", {"timestep_spacing": "trailing"})])
def test_schedule_type_is_the_diffusers_config(components, schedule_type, overrides):
    from diffusers import DPMSolverMultistepScheduler

    mine = ours(components, scheduler="dpm++2m", schedule_type=schedule_type)
    pipe = reference_pipeline(components, "dpm++2m")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(components.scheduler_config, **overrides)
    theirs = pipe("a red circle", num_inference_steps=4, guidance_scale=7.5, output_type="np",
                  generator=torch.Generator().manual_seed(5), height=64, width=64).images[0]
    assert np.abs(mine - theirs).max() <= 1e-4


def test_latent_hires_fix_is_txt2img_then_img2img_on_upscaled_latents(components):
    """First pass, bilinear 2x latents, then diffusers' img2img from those latents: 3 steps of a
    6-step schedule at strength 0.5 (A1111: int(3 / 0.5) = 6), noise drawn afresh from the seed."""
    from diffusers import StableDiffusionImg2ImgPipeline

    hires = HiresPlan(scale=2.0, steps=3, strength=0.5, upscaler="latent")
    mine = ours(components, scheduler="euler", hires=hires)
    first = reference_pipeline(components, "euler")(
        "a red circle", num_inference_steps=4, guidance_scale=7.5, output_type="latent",
        generator=torch.Generator().manual_seed(5), height=64, width=64).images
    up = torch.nn.functional.interpolate(first, size=(16, 16), mode="bilinear", antialias=False)
    base = reference_pipeline(components, "euler")
    img2img = StableDiffusionImg2ImgPipeline(**{k: v for k, v in base.components.items()})
    img2img.set_progress_bar_config(disable=True)
    theirs = img2img("a red circle", image=up, strength=0.5, num_inference_steps=6, guidance_scale=7.5,
                     generator=torch.Generator().manual_seed(5), output_type="np").images[0]
    assert mine.shape == theirs.shape == (128, 128, 3)
    assert np.abs(mine - theirs).max() <= 1e-4


def test_lanczos_hires_fix_gives_the_upscaled_size(components):
    image = ours(components, hires=HiresPlan(scale=1.5, steps=2, strength=0.6, upscaler="lanczos"))
    assert image.shape == (96, 96, 3)


RECIPE = ("--clip-skip", "2", "--scheduler", "DPM++ 2M", "--schedule-type", "karras", "--variation-seed", "11",
          "--variation-strength", "0.25", "--ensd", "7", "--hires-scale", "1.5", "--hires-steps", "2",
          "--hires-strength", "0.6", "--hires-upscaler", "lanczos", "--pad-conds")


def _pixels(path):
    return np.asarray(Image.open(path))


def test_every_recipe_field_is_recorded_and_replayed_by_from(ldm, tiny_model, tmp_path):
    base = ("--model", tiny_model, "--steps", "3", "--seed", "4")
    made = ldm("generate", "a (red:1.3) circle BREAK blue", *base, *RECIPE, "--neg", "blurry " * 80, "--out", "a.png")
    assert made.code == 0, made.stderr
    fields = parse_a1111(read_png_metadata(tmp_path / "a.png")["parameters"])["fields"]
    assert {k: fields[k] for k in ("Sampler", "Schedule type", "Clip skip", "Variation seed", "Variation seed strength",
                                   "ENSD", "Hires upscale", "Hires steps", "Hires upscaler", "Denoising strength",
                                   "Pad conds", "RNG", "Size")} == {
        "Sampler": "DPM++ 2M", "Schedule type": "Karras", "Clip skip": "2", "Variation seed": "11",
        "Variation seed strength": "0.25", "ENSD": "7", "Hires upscale": "1.5", "Hires steps": "2",
        "Hires upscaler": "Lanczos", "Denoising strength": "0.6", "Pad conds": "True", "RNG": "CPU", "Size": "64x64"}
    assert Image.open(tmp_path / "a.png").size == (96, 96)
    again = ldm("generate", "--from", tmp_path / "a.png", "--model", tiny_model, "--out", "b.png")
    assert again.code == 0, again.stderr
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "b.png"))
    # the same picture from the A1111 line alone (strip the ldm record)
    a1111_only = tmp_path / "c.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", read_png_metadata(tmp_path / "a.png")["parameters"])
    Image.open(tmp_path / "a.png").save(a1111_only, pnginfo=info)
    third = ldm("generate", "--from", a1111_only, "--model", tiny_model, "--out", "d.png")
    assert third.code == 0 and "warning" not in third.stderr, third.stderr
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "d.png"))


def test_each_field_changes_the_picture(ldm, tiny_model, tmp_path):
    """Guards the replay test: every field on its own makes another picture."""
    base = ("generate", "a red circle", "--model", tiny_model, "--steps", "3", "--seed", "4", "--scheduler", "euler-a")
    assert ldm(*base, "--out", "plain.png").code == 0
    for i, extra in enumerate([("--clip-skip", "2"), ("--schedule-type", "sgm-uniform"), ("--ensd", "7"),
                               ("--variation-seed", "11", "--variation-strength", "0.25")]):
        assert ldm(*base, *extra, "--out", f"{i}.png").code == 0
        assert not np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(tmp_path / f"{i}.png")), extra


def _a1111_png(path, line):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", line)
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)


def test_a1111_fields_read_and_the_rest_named_in_one_warning(ldm, tiny_model, tmp_path):
    _a1111_png(tmp_path / "x.png", "a fox\nNegative prompt: blurry\n"
               "Steps: 3, Sampler: DPM++ 2M Karras, CFG scale: 6, Seed: 8, Size: 64x64, Model hash: abc, "
               "Clip skip: 2, ENSD: 31337, RNG: NV, Seed resize from: 512x512, Hires upscale: 2, "
               "Hires upscaler: R-ESRGAN 4x+, Denoising strength: 0.4, Version: v1.10.1")
    result = ldm("generate", "--from", tmp_path / "x.png", "--model", tiny_model, "--dry-run")
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1
    for named in ("RNG: NV", "Seed resize from: 512x512", "Hires upscaler: R-ESRGAN 4x+"):
        assert named in warnings[0]
    for quiet in ("Model hash", "Version", "Clip skip"):
        assert quiet not in warnings[0]
    assert "'clip_skip': 2" in result.stdout and "'eta_noise_seed_delta': 31337" in result.stdout
    assert "'schedule_type': 'karras'" in result.stdout and "'hires_scale': 2.0" in result.stdout
    assert "'hires_strength': 0.4" in result.stdout and "dpm++2m" in result.stdout


def test_bad_recipe_values_are_one_line_errors(ldm, tiny_model):
    base = ("generate", "a fox", "--model", tiny_model, "--steps", "1")
    for extra, says in [(("--clip-skip", "0"), "--clip-skip 0"), (("--clip-skip", "3"), "only 2 layers"),
                        (("--schedule-type", "karras"), "also pass --scheduler"),
                        (("--scheduler", "ddim", "--schedule-type", "karras"), "does not apply"),
                        (("--scheduler", "Restart"), "not known"), (("--variation-strength", "0.5"), "--variation-seed"),
                        (("--hires-scale", "0.5"), "--hires-scale 0.5"), (("--hires-steps", "3"), "only used with"),
                        (("--hires-scale", "2", "--hires-upscaler", "esrgan"), "latent or lanczos"),
                        (("--rng", "gpu"), "only cpu"), (("--prompt-syntax", "comfy"), "a1111"), ]:
        result = ldm(*base, *extra)
        assert result.code == 2 and says in result.stderr and "Traceback" not in result.stderr, (extra, result.stderr)
    bad_weight = ldm("generate", "a (fox:1.2.3)", "--model", tiny_model, "--steps", "1")
    assert bad_weight.code == 2 and "not a number" in bad_weight.stderr


def test_plain_syntax_is_recorded_as_emphasis_none_and_replayed(ldm, tiny_model, tmp_path):
    base = ("--model", tiny_model, "--steps", "2", "--seed", "1")
    assert ldm("generate", "a (red:1.5) fox", *base, "--prompt-syntax", "plain", "--out", "p.png").code == 0
    assert "Emphasis: None" in read_png_metadata(tmp_path / "p.png")["parameters"]
    assert ldm("generate", "a (red:1.5) fox", *base, "--out", "w.png").code == 0
    assert not np.array_equal(_pixels(tmp_path / "p.png"), _pixels(tmp_path / "w.png"))
    a1111_only = tmp_path / "q.png"
    _a1111_png(a1111_only, read_png_metadata(tmp_path / "p.png")["parameters"])
    assert ldm("generate", "--from", a1111_only, "--model", tiny_model, "--out", "r.png").code == 0
    assert np.array_equal(_pixels(tmp_path / "p.png"), _pixels(tmp_path / "r.png"))


def test_a1111_sampler_names_and_schedule_types_agree(ldm, tiny_model, tmp_path):
    base = ("generate", "a fox", "--model", tiny_model, "--steps", "3", "--seed", "2")
    for i, flags in enumerate([("--scheduler", "DPM++ 2M Karras"), ("--scheduler", "DPM++ 2M", "--schedule-type", "Karras"),
                               ("--scheduler", "dpm++2m", "--schedule-type", "karras"), ("--scheduler", "dpm++2m-karras")]):
        assert ldm(*base, *flags, "--out", f"{i}.png").code == 0
        assert np.array_equal(_pixels(tmp_path / "0.png"), _pixels(tmp_path / f"{i}.png")), flags
        assert "Sampler: DPM++ 2M, Schedule type: Karras" in read_png_metadata(tmp_path / f"{i}.png")["parameters"]
    listing = ldm("schedulers").stdout
    assert "--schedule-type: Automatic, Uniform, Karras, Exponential, SGM Uniform, Beta (Automatic = Karras)" in listing
