"""`ldm distill` (latent consistency distillation into a LoRA or a full UNet): the objective's pieces
against their formulas and diffusers' DDIM step, short runs on a tiny real model whose LoRA or LCM model
folder ldm and diffusers load (the same pixels as diffusers' LCM pipeline), exact resume, refused flags
and bundled LoRA names."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_finetune_train import make_shapes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("distill") / "data")


def _betas():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod


def test_boundary_scalings_are_identity_at_zero_and_follow_the_formula():
    from ldm_cli.training.lcm import boundary_scalings

    t = torch.tensor([0, 1, 19, 999])
    c_skip, c_out = boundary_scalings(t)
    assert c_skip[0].item() == 1.0 and c_out[0].item() == 0.0  # f(x, 0) = x: the boundary condition
    for i, step in enumerate(t.tolist()):
        scaled = 10.0 * step
        assert math.isclose(c_skip[i].item(), 0.25 / (scaled**2 + 0.25), rel_tol=1e-6)
        assert math.isclose(c_out[i].item(), scaled / math.sqrt(scaled**2 + 0.25), rel_tol=1e-6)
    assert c_skip[-1] < 1e-6 and c_out[-1] > 0.999999  # far from 0 the model's x0 alone


def test_boundary_scalings_match_diffusers_lcm_scheduler():
    from diffusers import LCMScheduler

    from ldm_cli.training.lcm import boundary_scalings

    scheduler = LCMScheduler()
    for step in (0, 19, 259, 999):
        expected = scheduler.get_scalings_for_boundary_condition_discrete(step)
        got = boundary_scalings(torch.tensor([step]))
        assert math.isclose(got[0].item(), float(expected[0]), rel_tol=1e-6, abs_tol=1e-12)
        assert math.isclose(got[1].item(), float(expected[1]), rel_tol=1e-6, abs_tol=1e-12)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_solver_step_equals_diffusers_ddim_scheduler_step(prediction_type):
    from diffusers import DDIMScheduler

    from ldm_cli.training.lcm import DDIMSolver, to_x0_eps

    reference = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type=prediction_type, timestep_spacing="trailing", set_alpha_to_one=False,
                              clip_sample=False)
    reference.set_timesteps(50)
    solver = DDIMSolver(reference.alphas_cumprod, 1000, 50)
    assert sorted(solver.timesteps.tolist()) == sorted(reference.timesteps.tolist())  # 19, 39, ..., 999
    generator = torch.Generator().manual_seed(0)
    for index in (0, 1, 24, 49):
        t = int(solver.timesteps[index])
        sample = torch.randn(2, 4, 8, 8, generator=generator)
        output = torch.randn(2, 4, 8, 8, generator=generator)
        expected = reference.step(output, t, sample, eta=0.0).prev_sample
        x0, eps = to_x0_eps(output, sample, reference.alphas_cumprod, torch.tensor([t, t]), prediction_type)
        got = solver.step(x0, eps, torch.tensor([index, index]))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert int(solver.previous(torch.tensor(index))) == max(t - 20, 0)


def test_x0_eps_round_trip_for_each_prediction_type():
    from ldm_cli.training.lcm import to_x0_eps

    abar = _betas()
    t = torch.tensor([10, 500, 990])
    x0 = torch.randn(3, 4, 4, 4)
    eps = torch.randn(3, 4, 4, 4)
    a, s = abar[t].sqrt().view(-1, 1, 1, 1), (1 - abar[t]).sqrt().view(-1, 1, 1, 1)
    noisy = a * x0 + s * eps
    for kind, output in (("epsilon", eps), ("v_prediction", a * eps - s * x0), ("sample", x0)):
        got_x0, got_eps = to_x0_eps(output, noisy, abar, t, kind)
        torch.testing.assert_close(got_x0, x0, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(got_eps, eps, atol=2e-4, rtol=1e-4)


def test_huber_loss_formula():
    from ldm_cli.training.lcm import consistency_loss

    a, b = torch.tensor([0.0, 1.0, -2.0]), torch.zeros(3)
    c = 0.001
    expected = sum(math.sqrt(d * d + c * c) - c for d in (0.0, 1.0, -2.0)) / 3
    assert math.isclose(consistency_loss(a, b, "huber", c).item(), expected, rel_tol=1e-6)
    assert math.isclose(consistency_loss(a, b, "l2", c).item(), 5 / 3, rel_tol=1e-6)


ARGS = ("--batch-size", "2", "--rank", "4", "--checkpoint-every", "1", "--keep", "2", "--seed", "3", "--lr", "1e-3")


def test_short_run_writes_a_lora_that_ldm_and_diffusers_load(ldm, tiny_model, shapes, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    run = ldm("distill", shapes, "--model", tiny_model, "-o", "lcm", "--max-steps", "3", *ARGS)
    assert run.code == 0, run.stderr
    lora = tmp_path / "lcm" / "lcm.safetensors"
    with safe_open(str(lora), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert meta["ldm.distill"] == "lcm" and meta["ldm.steps"] == "3"
    assert keys and all(k.startswith("unet.") and ".lora_" in k for k in keys)
    with safe_open(str(lora), "pt") as f:
        assert any(f.get_tensor(k).abs().max() > 0 for k in keys if "lora_B" in k)  # it trained
    assert '"command": "ldm distill"' in (tmp_path / "lcm" / "run.json").read_text()
    made = ldm("generate", "a red circle", "--model", tiny_model, "--lora", lora, "--scheduler", "lcm", "--steps", "2",
               "-o", "out.png")
    assert made.code == 0, made.stderr
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(lora))
    assert any("lora" in name for name, _ in pipe.unet.named_modules())


def test_resume_continues_exactly(ldm, tiny_model, shapes, tmp_path):
    from safetensors.torch import load_file

    whole = ldm("distill", shapes, "--model", tiny_model, "-o", "whole", "--max-steps", "4", *ARGS)
    assert whole.code == 0, whole.stderr
    first = ldm("distill", shapes, "--model", tiny_model, "-o", "split", "--max-steps", "2", *ARGS)
    assert first.code == 0, first.stderr
    resumed = ldm("distill", shapes, "--model", tiny_model, "-o", "split", "--max-steps", "4", "--resume", "latest", *ARGS)
    assert resumed.code == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "checkpoint-000002" in resumed.stderr
    a = load_file(str(tmp_path / "whole" / "whole.safetensors"))
    b = load_file(str(tmp_path / "split" / "split.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("args, needle", [
    (("--w-min", "9", "--w-max", "3"), "--w-min 9.0 is above --w-max"),
    (("--loss", "l1"), "--loss 'l1'"),
    (("--ddim-timesteps", "1"), "--ddim-timesteps 1"),
])
def test_bad_settings_are_usage_errors(ldm, shapes, args, needle):
    result = ldm("distill", shapes, "--model", "demo", "-o", "x", *args)
    assert result.code == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_bundled_lora_names_resolve_and_a_wrong_name_lists_them():
    from ldm_cli.errors import UsageError
    from ldm_cli.models.lora import BUNDLED_LORAS, bundled_lora_names, parse_lora_arg

    assert "demo-lcm" in bundled_lora_names()
    spec = parse_lora_arg("demo-lcm:0.5")
    assert spec.path == BUNDLED_LORAS / "demo-lcm.safetensors" and spec.scale == 0.5
    with pytest.raises(UsageError, match="bundled name: .*demo-lcm"):
        parse_lora_arg("no-such-lora")


FULL_ARGS = ("--method", "full", "--batch-size", "2", "--checkpoint-every", "1", "--keep", "2", "--seed", "3",
             "--lr", "1e-3")


def test_the_full_student_starts_as_the_teacher_for_every_w(tiny_model):
    from diffusers import UNet2DConditionModel

    from ldm_cli.pipeline.loop.guidance import w_embedding
    from ldm_cli.training.distillation import lcm_student

    teacher = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    student = lcm_student(teacher)
    assert student.config.time_cond_proj_dim == 256 and teacher.config.time_cond_proj_dim is None
    generator = torch.Generator().manual_seed(0)
    sample, text = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 77, 32, generator=generator)
    t = torch.tensor([999, 259])
    with torch.no_grad():
        expected = teacher(sample, t, encoder_hidden_states=text).sample
        for w in ((3.0, 15.0), (0.0, 7.5)):
            got = student(sample, t, encoder_hidden_states=text, timestep_cond=w_embedding(torch.tensor(w), 256)).sample
            assert torch.equal(got, expected)


def test_full_distill_writes_an_lcm_model_that_generates_like_diffusers(ldm, tiny_model, shapes, tmp_path):
    import json

    import numpy as np
    from diffusers import LatentConsistencyModelPipeline
    from PIL import Image
    from safetensors.torch import load_file

    run = ldm("distill", shapes, "--model", tiny_model, "-o", "full", "--max-steps", "3", *FULL_ARGS)
    assert run.code == 0, run.stderr
    out = tmp_path / "full"
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["settings"]["method"] == "full"
    assert record["distilled"]["into"] == "full UNet" and record["distilled"]["teacher"] == str(tiny_model)
    assert record["distilled"]["w_embedding_dim"] == 256 and record["settings"]["ema_decay"] == 0.95
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "LCMScheduler" and scheduler["original_inference_steps"] == 50
    # The exported UNet is the EMA target of the last checkpoint, and its w projection has trained.
    unet = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    target = load_file(str(out / "checkpoints" / "checkpoint-000003" / "ema.safetensors"))
    assert unet.keys() == {k[len("unet."):] for k in target} and all(torch.equal(unet[k[5:]], v) for k, v in target.items())
    assert unet["time_embedding.cond_proj.weight"].abs().max() > 0
    # `--steps 4` alone picks lcm and the w embedding (guidance 8.5); diffusers' LCM pipeline draws the same.
    made = ldm("generate", "a red circle", "--model", out, "--steps", "4", "--seed", "3", "-o", "a.png")
    assert made.code == 0, made.stderr
    settings = json.loads(Image.open(tmp_path / "a.png").text["ldm"])["settings"]
    assert settings["scheduler"] == "lcm" and settings["guidance"] == 8.5
    pipe = LatentConsistencyModelPipeline.from_pretrained(out, safety_checker=None, feature_extractor=None,
                                                          requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    ref = pipe("a red circle", num_inference_steps=4, guidance_scale=8.5, height=64, width=64,
               generator=torch.Generator().manual_seed(3), output_type="np").images[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.int16)
    assert np.abs(np.asarray(Image.open(tmp_path / "a.png").convert("RGB")).astype(np.int16) - ref).max() <= 1


def test_full_resume_continues_exactly(ldm, tiny_model, shapes, tmp_path):
    from safetensors.torch import load_file

    whole = ldm("distill", shapes, "--model", tiny_model, "-o", "whole", "--max-steps", "4", *FULL_ARGS)
    assert whole.code == 0, whole.stderr
    first = ldm("distill", shapes, "--model", tiny_model, "-o", "split", "--max-steps", "2", *FULL_ARGS)
    assert first.code == 0, first.stderr
    lora = ldm("distill", shapes, "--model", tiny_model, "-o", "split", "--max-steps", "4", "--resume", "latest",
               *[a for a in FULL_ARGS if a not in ("--method", "full")])
    assert lora.code == 2 and "--method full" in lora.stderr  # a full run does not resume as a LoRA one
    resumed = ldm("distill", shapes, "--model", tiny_model, "-o", "split", "--max-steps", "4", "--resume", "latest", *FULL_ARGS)
    assert resumed.code == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "checkpoint-000002" in resumed.stderr
    for name in ("unet/diffusion_pytorch_model.safetensors", "checkpoints/checkpoint-000004/trainable.safetensors"):
        a, b = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "split" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("args, needle", [
    (("--method", "full", "--rank", "4"), "--rank 4: only --method lora uses it; drop it, or pass --method lora"),
    (("--method", "full", "--alpha", "2"), "--alpha 2: only --method lora uses it"),
    (("--method", "full", "--lora-format", "kohya"), "--lora-format kohya: only --method lora uses it"),
    (("--ema-decay", "0.9"), "--ema-decay 0.9: only --method full uses it; drop it, or pass --method full"),
    (("--method", "full", "--ema-decay", "1"), "--ema-decay 1.0: must be between 0 and 1 (0.95"),
    (("--method", "dreambooth"), "--method 'dreambooth': choose one of lora, full"),
])
def test_flags_of_the_other_method_are_refused(ldm, shapes, args, needle):
    result = ldm("distill", shapes, "--model", "demo", "-o", "x", *args)
    assert result.code == 2 and needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_resume_hint_is_an_ldm_distill_command(tmp_path):
    from ldm_cli.training.distill_settings import DistillSettings
    from ldm_cli.training.resume_hint import resume_command

    s = DistillSettings(data=tmp_path, output=tmp_path / "o", method="lora", caption_dropout=0.0, batch_size=4,
                        lr=3e-4, w_min=5.5, loss_type="l2")
    hint = resume_command(s, "demo", 128, ("a red circle",))
    assert hint.startswith("ldm distill ") and hint.endswith("--resume latest")
    assert "--batch-size 4" in hint and "--w-min 5.5" in hint and "--loss l2" in hint and "--lr 0.0003" in hint
    assert "--caption-dropout" not in hint and "--method" not in hint and "--validation-prompt" not in hint
    full = resume_command(DistillSettings(data=tmp_path, output=tmp_path / "o", method="full", ema_decay=0.9), "demo", 128)
    assert "--method full" in full and "--ema-decay 0.9" in full and "--rank" not in full


def test_demo_lcm_makes_the_prompted_picture_in_4_steps(ldm, tmp_path):
    import numpy as np
    from PIL import Image

    from ldm_cli.demo.checker import read_image

    made = ldm("generate", "a red circle on a blue background", "--model", "demo", "--lora", "demo-lcm",
               "--scheduler", "lcm", "--steps", "4", "--seed", "1", "-o", "red.png")
    assert made.code == 0, made.stderr
    reading = read_image(np.asarray(Image.open(tmp_path / "red.png").convert("RGB")))
    assert reading.colour == "red" and reading.shape == "circle"
