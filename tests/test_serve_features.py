"""The A1111 request fields for ldm's features (hires fix, variation seeds, clip skip, ENSD, inpainting,
<lora:> tags, embeddings, sd_vae) give the same pixels and `parameters` line as `ldm generate` with the
matching flags, on a real server on 127.0.0.1 and the tiny model."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from serve_helpers import call, pixels_of_b64, running_server

PROMPT = "a red square on a blue field"
BASE = {"prompt": PROMPT, "steps": 3, "seed": 4, "cfg_scale": 7.5, "sampler_name": "Euler", "width": 64, "height": 64}
CLI = ("--steps", 3, "--seed", 4, "--guidance", 7.5, "--scheduler", "euler", "--schedule-type", "automatic",
       "--width", 64, "--height", 64)


@pytest.fixture(scope="module")
def networks(tiny_model, kohya_lora_tensors, tmp_path_factory):
    """loras/ with the shared kohya LoRA as `style` (and a broken one); embeddings/ with a 2-vector embedding
    `shiny` and one for a wider text encoder, `wide`."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("networks")
    (folder / "loras").mkdir()
    (folder / "embeddings").mkdir()
    tensors = kohya_lora_tensors
    save_file(tensors, str(folder / "loras" / "style.safetensors"), metadata={"ss_network_dim": "4", "ss_output_name": "styleA"})
    first = next(iter(tensors)).removesuffix(".lora_down.weight")
    save_file({f"{first}.lora_down.weight": tensors[f"{first}.lora_down.weight"]}, str(folder / "loras" / "broken.safetensors"))
    width = json.loads((tiny_model / "text_encoder" / "config.json").read_text())["hidden_size"]
    save_file({"emb_params": torch.randn(2, width, generator=torch.Generator().manual_seed(5))}, str(folder / "embeddings" / "shiny.safetensors"))
    save_file({"emb_params": torch.randn(1, width + 8)}, str(folder / "embeddings" / "wide.safetensors"))
    return folder


@pytest.fixture(scope="module")
def server(tiny_model, networks):
    with running_server(tiny_model, lora_dirs=(networks / "loras",), embeddings_dirs=(networks / "embeddings",)) as (url, worker):
        yield url


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def served(server, body, route="txt2img"):
    status, _, answer = call(server, f"/sdapi/v1/{route}", body)
    assert status == 200, answer
    info = json.loads(answer["info"])
    with Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))) as image:
        parameters = image.text["parameters"]
    return pixels_of_b64(answer["images"][0]), parameters, info


def generated(ldm, tiny_model, tmp_path, *args, prompt=PROMPT):
    out = tmp_path / "cli.png"
    out.unlink(missing_ok=True)
    result = ldm("generate", prompt, "--model", tiny_model, "--device", "cpu", "--out", out, *args)
    assert result.code == 0, result.stderr
    with Image.open(out) as image:
        return np.asarray(image.convert("RGB")), image.text["parameters"]


def assert_same(server_side, cli_side):
    assert np.array_equal(server_side[0], cli_side[0])
    assert server_side[1] == cli_side[1]  # the same A1111 line


@pytest.mark.parametrize("upscaler,flag", [("Latent", "latent"), ("Lanczos", "lanczos")])
def test_hires_fix_matches_ldm_generate(server, ldm, tiny_model, tmp_path, upscaler, flag):
    body = {**BASE, "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": upscaler, "hr_second_pass_steps": 2,
            "denoising_strength": 0.6}
    pixels, parameters, info = served(server, body)
    assert pixels.shape == (96, 96, 3) and info["denoising_strength"] == 0.6
    assert f"Hires upscaler: {upscaler}" in parameters
    assert_same((pixels, parameters), generated(ldm, tiny_model, tmp_path, *CLI, "--hires-scale", 1.5, "--hires-steps", 2,
                                                "--hires-strength", 0.6, "--hires-upscaler", flag))


def test_hires_defaults_are_a1111s(server, ldm, tiny_model, tmp_path):
    """No hr_upscaler: Latent; no denoising_strength: 0.7; hr_second_pass_steps 0: as many as steps."""
    pixels, parameters, _ = served(server, {**BASE, "enable_hr": True, "hr_scale": 2})
    assert_same((pixels, parameters), generated(ldm, tiny_model, tmp_path, *CLI, "--hires-scale", 2))


def test_variation_seed_matches_ldm_generate(server, ldm, tiny_model, tmp_path):
    pixels, parameters, info = served(server, {**BASE, "subseed": 11, "subseed_strength": 0.3})
    assert (info["subseed"], info["subseed_strength"]) == (11, 0.3)
    assert_same((pixels, parameters), generated(ldm, tiny_model, tmp_path, *CLI, "--variation-seed", 11,
                                                "--variation-strength", 0.3))
    plain = served(server, BASE)[0]
    assert not np.array_equal(pixels, plain)
    batch = served(server, {**BASE, "subseed": 11, "subseed_strength": 0.3, "batch_size": 2})[2]
    assert batch["all_seeds"] == [4, 5] and batch["all_subseeds"] == [11, 12]  # A1111 steps both
    assert "Variation seed: 12," in batch["infotexts"][1]


@pytest.mark.parametrize("field", [{"override_settings": {"CLIP_stop_at_last_layers": 2}}, {"clip_skip": 2}])
def test_clip_skip_matches_ldm_generate(server, ldm, tiny_model, tmp_path, field):
    pixels, parameters, info = served(server, {**BASE, **field})
    assert "Clip skip: 2" in parameters and info["clip_skip"] == 2
    assert_same((pixels, parameters), generated(ldm, tiny_model, tmp_path, *CLI, "--clip-skip", 2))


def test_options_set_clip_skip_and_ensd_for_later_requests_as_in_a1111(tiny_model, ldm, tmp_path):
    """Open WebUI and SillyTavern set CLIP_stop_at_last_layers with POST /options; a request's
    override_settings still wins."""
    with running_server(tiny_model) as (url, _):
        assert call(url, "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 2})[0] == 200
        assert call(url, "/sdapi/v1/options")[2]["CLIP_stop_at_last_layers"] == 2
        pixels, parameters, info = served(url, BASE)
        assert info["clip_skip"] == 2
        assert_same((pixels, parameters), generated(ldm, tiny_model, tmp_path, *CLI, "--clip-skip", 2))
        overridden = served(url, {**BASE, "override_settings": {"CLIP_stop_at_last_layers": 1}})
        assert "Clip skip" not in overridden[1]
        for bad in ({"CLIP_stop_at_last_layers": 20}, {"CLIP_stop_at_last_layers": "x"}, {"sd_vae": "other.safetensors"}):
            status, _, answer = call(url, "/sdapi/v1/options", bad)
            assert status == 422 and next(iter(bad)) in answer["detail"], answer


def test_eta_noise_seed_delta_matches_ldm_generate(server, ldm, tiny_model, tmp_path):
    body = {**BASE, "sampler_name": "Euler a", "override_settings": {"eta_noise_seed_delta": 31337}}
    pixels, parameters, _ = served(server, body)
    cli = [*CLI]
    cli[cli.index("euler")] = "euler-a"
    assert_same((pixels, parameters), generated(ldm, tiny_model, tmp_path, *cli, "--eta-noise-seed-delta", 31337))


INPAINT_CASES = [
    ({"mask_blur": 2, "inpainting_fill": 1, "inpaint_full_res": False},
     ("--mask-blur", 2, "--masked-content", "original", "--inpaint-area", "whole")),
    ({"mask_blur": 0, "inpainting_fill": 0, "inpaint_full_res": True, "inpaint_full_res_padding": 8, "inpainting_mask_invert": 1},
     ("--mask-blur", 0, "--masked-content", "fill", "--inpaint-area", "masked", "--inpaint-padding", 8, "--invert-mask")),
    ({"mask_blur_x": 3, "mask_blur_y": 3, "inpaint_full_res": False}, ("--mask-blur", 3, "--masked-content", "fill")),
]


@pytest.mark.parametrize("fields,flags", INPAINT_CASES)
def test_inpainting_matches_ldm_generate(server, ldm, tiny_model, tmp_path, inpaint_pictures, fields, flags):
    body = {**BASE, "init_images": [b64(inpaint_pictures.init)], "mask": b64(inpaint_pictures.mask),
            "denoising_strength": 0.8, "resize_mode": 1, **fields}
    pixels, parameters, _ = served(server, body, "img2img")
    assert_same((pixels, parameters), generated(ldm, tiny_model, tmp_path, *CLI, "--init-image", inpaint_pictures.init,
                                                "--mask", inpaint_pictures.mask, "--strength", 0.8, *flags))
    init = np.asarray(Image.open(inpaint_pictures.init).convert("RGB"))
    keep = np.asarray(Image.open(inpaint_pictures.mask)) == (255 if fields.get("inpainting_mask_invert") else 0)
    far = np.zeros_like(keep)
    far[:8, :8] = True  # far from the mask's edge: the picture's own pixels, whatever the blur
    if not fields.get("inpainting_mask_invert"):
        assert np.array_equal(pixels[far & keep], init[far & keep])


@pytest.mark.parametrize("fields,field", [({"inpainting_fill": 2}, "inpainting_fill"), ({"inpainting_fill": 3}, "inpainting_fill"),
                                          ({"mask_blur_x": 2, "mask_blur_y": 6}, "mask_blur_x"),
                                          ({"latent_mask": "AAAA"}, "latent_mask")])
def test_inpainting_choices_ldm_lacks_are_refused(server, inpaint_pictures, fields, field):
    body = {**BASE, "init_images": [b64(inpaint_pictures.init)], "mask": b64(inpaint_pictures.mask), **fields}
    status, _, answer = call(server, "/sdapi/v1/img2img", body)
    assert status == 422 and answer["detail"].startswith(f"not supported by ldm: {field}")


def test_inpainting_fields_without_a_mask_are_ignored_as_in_a1111(server, inpaint_pictures):
    body = {**BASE, "init_images": [b64(inpaint_pictures.init)], "inpainting_fill": 2, "mask_blur_x": 2, "mask_blur_y": 6,
            "inpaint_full_res_padding": 32, "inpainting_mask_invert": 1}
    assert call(server, "/sdapi/v1/img2img", body)[0] == 200


def test_a_mask_that_is_not_an_image_names_the_field(server, inpaint_pictures):
    body = {**BASE, "init_images": [b64(inpaint_pictures.init)], "mask": base64.b64encode(b"not a picture").decode()}
    status, _, answer = call(server, "/sdapi/v1/img2img", body)
    assert status == 422 and "mask" in answer["detail"] and "/tmp" not in answer["detail"], answer


def test_lora_tags_match_ldm_generate_and_the_model_is_reloaded_per_set(server, ldm, tiny_model, tmp_path, networks):
    tagged = f"{PROMPT} <lora:style:0.8>"
    with_lora = served(server, {**BASE, "prompt": tagged})
    assert 'Lora hashes: "style: ' in with_lora[1]
    assert_same(with_lora[:2], generated(ldm, tiny_model, tmp_path, *CLI, "--lora-dir", networks / "loras", prompt=tagged))
    without = served(server, BASE)  # the next job has no LoRA: the model is loaded again without it
    assert not np.array_equal(without[0], with_lora[0])
    assert_same(without[:2], generated(ldm, tiny_model, tmp_path, *CLI))
    by_alias = served(server, {**BASE, "prompt": f"{PROMPT} <lora:styleA:0.8>"})  # kohya ss_output_name, as A1111
    assert np.array_equal(by_alias[0], with_lora[0])


def test_a_lora_that_cannot_be_used_fails_its_job_not_the_server(server):
    status, _, answer = call(server, "/sdapi/v1/txt2img", {**BASE, "prompt": f"{PROMPT} <lora:broken:1>"})
    assert status == 500 and "broken.safetensors" in answer["errors"] and "incomplete" in answer["errors"], answer
    plain = served(server, BASE)  # the model is loaded again, without it
    assert plain[0].shape == (64, 64, 3)


def test_embeddings_in_the_prompt_match_ldm_generate(server, ldm, tiny_model, tmp_path, networks):
    prompt = f"a shiny {PROMPT}"
    result = served(server, {**BASE, "prompt": prompt})
    assert "TI hashes" in result[1]
    assert_same(result[:2], generated(ldm, tiny_model, tmp_path, *CLI, "--embeddings-dir", networks / "embeddings", prompt=prompt))


def test_loras_and_embeddings_are_listed_as_a1111_lists_them(server, networks):
    status, _, loras = call(server, "/sdapi/v1/loras")
    assert status == 200 and [(l["name"], l["alias"]) for l in loras] == [("broken", "broken"), ("style", "styleA")]
    assert loras[1]["path"] == str((networks / "loras" / "style.safetensors").resolve()) and loras[1]["metadata"]["ss_network_dim"] == "4"
    status, _, embeddings = call(server, "/sdapi/v1/embeddings")
    assert status == 200 and set(embeddings["loaded"]) == {"shiny"} and set(embeddings["skipped"]) == {"wide"}
    assert embeddings["loaded"]["shiny"]["vectors"] == 2


def test_sd_vae_is_accepted_only_when_it_names_the_loaded_vae(tiny_model, tmp_path):
    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.serve.server import ServeSettings, serving_in_thread

    vae = tmp_path / "my.vae"
    import shutil

    shutil.copytree(tiny_model / "vae", vae)
    settings = ServeSettings(model=ModelSettings(model=str(tiny_model), device="cpu", offline=True, vae=str(vae)), port=0)
    with serving_in_thread(settings) as (url, _):
        assert call(url, "/sdapi/v1/sd-vae")[2] == [{"model_name": "my.vae", "filename": str(vae.resolve())}]
        assert call(url, "/sdapi/v1/options")[2]["sd_vae"] == "my.vae"
        for name in ("my.vae", "Automatic"):
            body = {**BASE, "steps": 1, "override_settings": {"sd_vae": name}}
            assert call(url, "/sdapi/v1/txt2img", body)[0] == 200
        status, _, answer = call(url, "/sdapi/v1/txt2img", {**BASE, "override_settings": {"sd_vae": "other.safetensors"}})
        assert status == 422 and "my.vae" in answer["detail"]


@pytest.mark.parametrize("flag", ["--lora-dir", "--embeddings-dir"])
def test_serve_refuses_a_folder_that_is_not_there(ldm, tiny_model, tmp_path, flag):
    result = ldm("serve", "--model", tiny_model, "--port", 0, flag, tmp_path / "nowhere")
    assert result.code == 2 and flag in result.stderr and "Traceback" not in result.stderr


def test_a_lora_tag_that_finds_no_file_is_named_in_the_warnings(server):
    _, parameters, info = served(server, {**BASE, "prompt": f"{PROMPT} <lora:nowhere:1>"})
    assert any("nowhere" in warning for warning in info["warnings"]) and "Lora hashes" not in parameters


def test_token_merging_ratio_matches_ldm_generate(server, ldm, tiny_model, tmp_path):
    body = {**BASE, "override_settings": {"token_merging_ratio": 0.5}}
    pixels, parameters, _ = served(server, body)
    assert "Token merging ratio: 0.5" in parameters
    assert_same((pixels, parameters), generated(ldm, tiny_model, tmp_path, *CLI, "--token-merging", 0.5))
    status, _, answer = call(server, "/sdapi/v1/txt2img", {**BASE, "override_settings": {"token_merging_ratio": 2}})
    assert status == 422 and "token_merging_ratio" in str(answer)
