"""The tcd sampler (Trajectory Consistency Distillation, Zheng et al. 2024): parity with diffusers'
StableDiffusionPipeline + TCDScheduler (gamma passed as `eta`, as the pipeline passes it), on a plain
UNet and on an LCM-style one (guidance embedding); --tcd-gamma checked, recorded and replayed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from ldm_cli.files.metadata import parse_a1111, read_png_metadata
from ldm_cli.models.loading import load_components, resolve_source
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.reference import reference_pipeline


def _both(components, steps, guidance, gamma):
    """(diffusers', ours) as [H, W, 3] floats for one seed and prompt."""
    ref = reference_pipeline(components, "tcd")(
        "a cat", num_inference_steps=steps, guidance_scale=guidance, eta=gamma,
        generator=torch.Generator().manual_seed(3), output_type="np", height=64, width=64).images[0]
    plan = SamplingPlan(64, 64, steps, guidance, "tcd", tcd_gamma=gamma)
    mine = TextToImage(components, "cpu", torch.float32).generate("a cat", 3, plan).image[0].permute(1, 2, 0).numpy()
    return ref, mine


def test_tcd_matches_stable_diffusion_pipeline_at_each_gamma(tiny_model):
    components = load_components(resolve_source(str(tiny_model)))
    images = {}
    for gamma in (0.0, 0.3, 1.0):
        ref, images[gamma] = _both(components, 4, 7.5, gamma)  # with a CFG pass
        assert np.abs(ref - images[gamma]).max() <= 1e-4, gamma
    assert np.abs(images[0.0] - images[0.3]).max() > 1e-3  # gamma reaches the step
    assert np.abs(images[0.3] - images[1.0]).max() > 1e-3


def test_tcd_on_an_lcm_style_unet_passes_guidance_as_the_embedding(consistency_model):
    components = load_components(resolve_source(str(consistency_model("TCDScheduler"))))
    images = {}
    for guidance in (7.5, 2.0):
        ref, images[guidance] = _both(components, 4, guidance, 0.3)
        assert np.abs(ref - images[guidance]).max() <= 1e-4, guidance
    assert np.abs(images[7.5] - images[2.0]).max() > 1e-3  # the w embedding reaches the UNet


def _gen(ldm, model, out, *extra):
    return ldm("generate", "a red circle", "--model", model, "--steps", "3", "--seed", "1", "--out", out, *extra)


def _record(path):
    return json.loads(Image.open(path).text["ldm"])["settings"]


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_a_tcd_model_defaults_to_tcd_with_the_guidance_that_suits_it(ldm, consistency_model, tiny_model, tmp_path):
    model = consistency_model("TCDScheduler")
    made = _gen(ldm, model, "d.png", "--json")
    assert made.code == 0, made.stderr
    assert json.loads(made.stdout.splitlines()[-1])["scheduler"] == "tcd"
    assert _record(tmp_path / "d.png")["guidance"] == 8.5 and _record(tmp_path / "d.png")["tcd_gamma"] == 0.3
    plan = json.loads(ldm("generate", "a cat", "--model", model, "--dry-run", "--json").stdout)
    assert plan["scheduler"] == "tcd" and plan["unet_batch"] == 1 and plan["tcd_gamma"] == 0.3
    # A plain UNet under tcd (a TCD-LoRA's case): 1.0, no unconditional pass; --g wins.
    assert _gen(ldm, tiny_model, "p.png", "--scheduler", "TCD").code == 0
    assert _record(tmp_path / "p.png")["guidance"] == 1.0 and _record(tmp_path / "p.png")["scheduler"] == "tcd"
    assert _gen(ldm, tiny_model, "g.png", "--scheduler", "tcd", "--g", "3").code == 0
    assert _record(tmp_path / "g.png")["guidance"] == 3.0


def test_gamma_is_recorded_and_replayed_by_from(ldm, tiny_model, tmp_path):
    assert _gen(ldm, tiny_model, "a.png", "--scheduler", "tcd", "--tcd-gamma", "0.6").code == 0
    assert _record(tmp_path / "a.png")["tcd_gamma"] == 0.6
    fields = parse_a1111(read_png_metadata(tmp_path / "a.png")["parameters"])["fields"]
    assert fields["Sampler"] == "TCD" and fields["TCD gamma"] == "0.6" and "Schedule type" not in fields
    again = ldm("generate", "--from", tmp_path / "a.png", "--model", tiny_model, "--out", "b.png")
    assert again.code == 0 and "warning" not in again.stderr, again.stderr
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "b.png"))
    # the A1111 line alone replays it too
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", read_png_metadata(tmp_path / "a.png")["parameters"])
    Image.open(tmp_path / "a.png").save(tmp_path / "c.png", pnginfo=info)
    third = ldm("generate", "--from", tmp_path / "c.png", "--model", tiny_model, "--out", "d.png")
    assert third.code == 0 and "warning" not in third.stderr, third.stderr
    assert np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "d.png"))
    # a flag overrides the recorded gamma, and makes another picture
    other = ldm("generate", "--from", tmp_path / "a.png", "--model", tiny_model, "--tcd-gamma", "0", "--out", "e.png")
    assert other.code == 0 and _record(tmp_path / "e.png")["tcd_gamma"] == 0.0
    assert not np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "e.png"))
    # another sampler drops the recorded gamma quietly; other images record none
    euler = ldm("generate", "--from", tmp_path / "a.png", "--model", tiny_model, "--scheduler", "euler", "--out", "f.png")
    assert euler.code == 0 and "gamma" not in euler.stderr, euler.stderr
    assert _record(tmp_path / "f.png")["tcd_gamma"] is None
    assert "TCD gamma" not in read_png_metadata(tmp_path / "f.png")["parameters"]


def test_gamma_for_another_sampler_is_named_and_not_recorded(ldm, tiny_model, tmp_path):
    result = _gen(ldm, tiny_model, "x.png", "--scheduler", "euler", "--tcd-gamma", "0.5")
    assert result.code == 0 and "--tcd-gamma 0.5 ignored" in result.stderr
    assert _record(tmp_path / "x.png")["tcd_gamma"] is None


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "inf", "x"])
def test_bad_gamma_is_a_one_line_usage_error(ldm, tiny_model, tmp_path, value):
    result = _gen(ldm, tiny_model, "x.png", "--scheduler", "tcd", f"--tcd-gamma={value}")
    lines = result.stderr.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and "--tcd-gamma" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_grid_takes_tcd_gamma_as_an_axis(ldm, tiny_model, tmp_path):
    result = ldm("grid", "a red circle", "--model", tiny_model, "--steps", "2", "--seed", "1", "--scheduler", "tcd",
                 "--x", "tcd-gamma=0,1", "--out", "g")
    assert result.code == 0, result.stderr
    assert [_record(tmp_path / "g" / f"cell-{i}-1-1.png")["tcd_gamma"] for i in (1, 2)] == [0.0, 1.0]


def test_serve_lists_tcd_and_resolves_its_names():
    from ldm_cli.serve.samplers import resolve, sampler_items

    assert {"name": "TCD", "aliases": ["tcd"], "options": {}} in sampler_items()
    assert resolve("TCD", None) == ("tcd", None) and resolve("tcd", "Automatic") == ("tcd", None)


def test_schedulers_lists_tcd_and_img2img_takes_it(ldm, tiny_model, tmp_path):
    listing = ldm("schedulers")
    assert listing.code == 0 and any(line.split()[:2] == ["tcd", "TCD"] for line in listing.stdout.splitlines())
    assert _gen(ldm, tiny_model, "init.png").code == 0
    result = _gen(ldm, tiny_model, "i.png", "--scheduler", "tcd", "--init-image", "init.png", "--strength", "0.5")
    assert result.code == 0, result.stderr
    assert _record(tmp_path / "i.png")["tcd_gamma"] == 0.3
