"""The demo recipe's training loops: they learn, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from ldm_cli.demo.recipe import RECIPE
from ldm_cli.demo.shapes import random_scene, render_array, sample_training_scenes
from ldm_cli.demo.train_vae import save_vae, train_vae

VAE = dataclasses.replace(RECIPE.vae, crop=32, crop_batch=4, crop_steps=100, full_steps=0, warmup=10)


@pytest.fixture(autouse=True)
def one_thread():
    """The training loops run single-threaded, as `make demo-model` runs them (and fast on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images():
    rng = random.Random(0)
    return render_array([random_scene(rng) for _ in range(8)])


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_vae_elbo_training_learns(images, tmp_path):
    messages = []
    train_vae(images, tmp_path, VAE, log=messages.append)
    mse = [float(m.split(" mse ")[1].split()[0]) for m in messages]  # running reconstruction error
    assert len(mse) == 4 and mse[-1] < 0.8 * mse[0], messages


def test_vae_training_resumes_exactly(images, tmp_path):
    short = dataclasses.replace(VAE, crop_steps=4, full_steps=2)
    straight = train_vae(images, tmp_path / "a", short, log=lambda m: None)
    assert train_vae(images, tmp_path / "b", short, log=lambda m: None, stop_after=3) is not None
    resumed = train_vae(images, tmp_path / "b", short, log=lambda m: None)
    assert _same(straight, resumed)


def test_text_to_image_training_resumes_exactly_and_writes_a_diffusers_folder(images, tmp_path):
    from safetensors.torch import load_file, save_file

    from ldm_cli.demo.train_text_to_image import CHECKPOINT, train_text_to_image
    from ldm_cli.demo.train_vae import build_vae

    captions = [c for _, c in sample_training_scenes(8, seed=1)]
    save_file({"latents": torch.randn(8, 4, 16, 16)}, str(tmp_path / "lat.safetensors"), metadata={"captions": json.dumps(captions)})
    save_vae(build_vae(VAE).eval(), tmp_path / "vae", 1.5)
    # Every option of the loop on: EMA (its state must resume too), v-prediction, min-SNR weights.
    unet = dataclasses.replace(RECIPE.unet, steps=3, batch=2, warmup=1, ema_decay=0.9, terminal_signal=0.004,
                               prediction_type="v_prediction", snr_gamma=5.0)
    recipe = dataclasses.replace(RECIPE, unet=unet)
    args = (tmp_path / "lat.safetensors", tmp_path / "vae")
    straight = train_text_to_image(*args, tmp_path / "a", tmp_path / "a" / "model", recipe, log=lambda m: None)
    assert train_text_to_image(*args, tmp_path / "b", tmp_path / "b" / "model", recipe, log=lambda m: None, stop_after=2) is None
    resumed = train_text_to_image(*args, tmp_path / "b", tmp_path / "b" / "model", recipe, log=lambda m: None)
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        a, b = load_file(str(straight / part)), load_file(str(resumed / part))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (resumed / "tokenizer" / "vocab.json").is_file() and (resumed / "model_index.json").is_file()
    assert (tmp_path / "b" / CHECKPOINT).exists()


def test_decoder_polish_changes_the_decoder_but_not_the_latents(images, tmp_path):
    from ldm_cli.demo.train_vae import build_vae, encode_all, polish_decoder

    torch.manual_seed(0)
    vae = build_vae(VAE).eval()
    latents = encode_all(vae, images[:2])
    decoder = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    polish_decoder(vae, images, tmp_path, dataclasses.replace(VAE, decoder_steps=3, decoder_batch=1), log=lambda m: None)
    assert torch.equal(encode_all(vae, images[:2]), latents)
    assert any(not torch.equal(decoder[k], v) for k, v in vae.decoder.state_dict().items())


def test_rescaled_schedule_leaves_only_the_terminal_signal_and_every_scheduler_samples_with_it():
    from ldm_cli.demo.train_text_to_image import build_scheduler
    from ldm_cli.pipeline.loop.schedulers import SCHEDULERS, build_scheduler as sampler_named

    unet = dataclasses.replace(RECIPE.unet, terminal_signal=0.004, prediction_type="v_prediction")
    config = dict(build_scheduler(unet).config)
    sd1 = build_scheduler(dataclasses.replace(unet, terminal_signal=None))
    shipped = sampler_named("ddpm", config)
    root = shipped.alphas_cumprod.sqrt()
    assert root[-1].item() == pytest.approx(0.004, rel=1e-3)
    assert root[0].item() == pytest.approx(sd1.alphas_cumprod[0].sqrt().item(), rel=1e-6)
    assert bool((root[1:] < root[:-1]).all())  # still a noising schedule: the signal only shrinks
    target = torch.full((1, 4, 4, 4), 0.5)
    for name, spec in SCHEDULERS.items():  # a perfect v-predictor must land on its target with every sampler
        sampler = sampler_named(name, config)
        sampler.set_timesteps(12)
        assert int(sampler.timesteps[0]) == 999  # trailing: sampling starts from (almost) pure noise
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(target.shape, generator=generator) * sampler.init_noise_sigma
        for t in sampler.timesteps:
            x_t = sampler.scale_model_input(x, t)
            abar = sampler.alphas_cumprod[int(t)]
            eps = (x_t - abar.sqrt() * target) / (1 - abar).sqrt()
            v = abar.sqrt() * eps - (1 - abar).sqrt() * target
            x = sampler.step(v, t, x, **({"generator": generator} if spec.stochastic else {})).prev_sample
        # (DDIM/PNDM stop at t=0, which keeps a trace of noise: sqrt(1 - abar_0) = 0.03)
        assert (x - target).abs().mean() < 0.05, (name, x.mean().item(), x.std().item())


def test_build_refuses_a_work_folder_of_another_recipe(tmp_path):
    from ldm_cli.demo.build import check_work_recipe

    check_work_recipe(tmp_path, RECIPE)  # records it
    check_work_recipe(tmp_path, RECIPE)  # same recipe: fine
    changed = dataclasses.replace(RECIPE, unet=dataclasses.replace(RECIPE.unet, steps=RECIPE.unet.steps + 1))
    with pytest.raises(SystemExit, match=r"different recipe \(changed: unet\).*--work NEW_FOLDER"):
        check_work_recipe(tmp_path, changed)
