"""`ldm serve` driven by the real webuiapi client and by plain HTTP against a real server on 127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from serve_helpers import call, running_server

webuiapi = pytest.importorskip("webuiapi", reason="the webuiapi client is a test extra: pip install -e '.[test]'")

PROMPT = "a red square on a blue field"


@pytest.fixture(scope="module")
def server(tiny_model):
    with running_server(tiny_model, max_queue=4) as (url, worker):
        yield url


@pytest.fixture(scope="module")
def client(server):
    host, port = server.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=5)


def cli_image(ldm, tiny_model, tmp_path, *args):
    out = tmp_path / "cli.png"
    result = ldm("generate", PROMPT, "--model", tiny_model, "--device", "cpu", "--out", out, *args)
    assert result.code == 0, result.stderr
    with Image.open(out) as image:
        return np.asarray(image.convert("RGB")), dict(image.text)


def without_timings(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "timings"}


def test_txt2img_matches_ldm_generate(client, ldm, tiny_model, tmp_path):
    served = client.txt2img(prompt=PROMPT, steps=5, seed=7, cfg_scale=7.5, sampler_name="Euler a", width=64, height=64)
    expected, chunks = cli_image(ldm, tiny_model, tmp_path, "--steps", 5, "--seed", 7, "--g", 7.5, "--scheduler", "euler-a",
                               "--schedule-type", "automatic")  # A1111: no scheduler is "Automatic"
    assert len(served.images) == 1
    assert np.array_equal(np.asarray(served.image.convert("RGB")), expected)
    assert served.image.info["parameters"] == chunks["parameters"]  # the same A1111 line as the CLI writes
    assert without_timings(json.loads(served.image.info["ldm"])) == without_timings(json.loads(chunks["ldm"]))
    assert served.info["all_seeds"] == [7] and served.info["infotexts"] == [chunks["parameters"]]
    assert served.parameters["prompt"] == PROMPT and served.parameters["steps"] == 5


def test_seed_and_settings_change_the_picture(client):
    """Guards the parity oracle: a different seed must give different pixels."""
    a = client.txt2img(prompt=PROMPT, steps=3, seed=1, sampler_name="DDIM", width=64, height=64)
    b = client.txt2img(prompt=PROMPT, steps=3, seed=2, sampler_name="DDIM", width=64, height=64)
    assert not np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_img2img_matches_ldm_generate(client, ldm, tiny_model, tmp_path, init_png):
    with Image.open(init_png) as image:
        served = client.img2img(images=[image.copy()], prompt=PROMPT, denoising_strength=0.6, steps=5, seed=3,
                                cfg_scale=7.5, sampler_name="DDIM", width=64, height=64, resize_mode=1)
    expected, chunks = cli_image(ldm, tiny_model, tmp_path, "--init-image", init_png, "--strength", 0.6, "--steps", 5,
                                 "--seed", 3, "--g", 7.5, "--scheduler", "ddim")
    assert np.array_equal(np.asarray(served.image.convert("RGB")), expected)
    assert served.image.info["parameters"] == chunks["parameters"]
    assert "Denoising strength: 0.6" in served.info["infotexts"][0]
    assert json.loads(served.image.info["ldm"])["img2img"]["init_image"] == "request:init_images[0]"
    assert served.parameters["init_images"] is None  # not echoed unless include_init_images


def test_batch_and_iterations_use_consecutive_seeds(client):
    result = client.txt2img(prompt=PROMPT, steps=2, seed=40, batch_size=2, n_iter=2, sampler_name="Euler", width=64, height=64)
    assert len(result.images) == 4 and result.info["all_seeds"] == [40, 41, 42, 43]
    assert len({np.asarray(image).tobytes() for image in result.images}) == 4


def test_model_and_sampler_lists(client, server):
    models = client.get_sd_models()
    assert len(models) == 1 and {"title", "model_name", "hash", "sha256", "filename"} <= set(models[0])
    assert models[0]["title"] == f"{models[0]['model_name']} [{models[0]['hash']}]"
    assert client.get_options()["sd_model_checkpoint"] == models[0]["title"]
    names = client.util_get_sampler_names()
    assert {"Euler a", "DDIM", "DPM++ 2M", "UniPC"} <= set(names)
    samplers = client.get_samplers()
    assert all({"name", "aliases", "options"} <= set(s) for s in samplers)
    assert "k_euler_a" in next(s for s in samplers if s["name"] == "Euler a")["aliases"]
    assert {s["name"] for s in client.get_schedulers()} == {"automatic", "uniform", "karras", "exponential", "sgm_uniform", "beta"}
    assert client.get_loras() == [] and client.get_sd_vae() == []
    assert client.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert [u["name"] for u in client.get_upscalers()] == ["Lanczos"]
    assert [m["name"] for m in client.get_latent_upscale_modes()] == ["Latent"]
    assert client.get_hypernetworks() == [] and client.get_scripts() == {"txt2img": [], "img2img": []}
    status, _, answer = call(server, "/internal/ping")
    assert status == 200 and answer == {}
    assert call(server, "/sdapi/v1/refresh-checkpoints", {})[0] == 200


def test_tcd_sampler_runs_with_its_default_gamma(client):
    assert "TCD" in client.util_get_sampler_names()
    result = client.txt2img(prompt=PROMPT, steps=3, seed=5, sampler_name="TCD", width=64, height=64)
    assert result.info["sampler_name"] == "TCD" and result.info["scheduler"] is None
    assert "Sampler: TCD," in result.info["infotexts"][0] and "TCD gamma: 0.3" in result.info["infotexts"][0]


def test_karras_schedule_and_old_style_names_agree(client):
    new = client.txt2img(prompt=PROMPT, steps=3, seed=5, sampler_name="DPM++ 2M", scheduler="karras", width=64, height=64)
    old = client.txt2img(prompt=PROMPT, steps=3, seed=5, sampler_name="DPM++ 2M Karras", width=64, height=64)
    automatic = client.txt2img(prompt=PROMPT, steps=3, seed=5, sampler_name="DPM++ 2M", width=64, height=64)
    uniform = client.txt2img(prompt=PROMPT, steps=3, seed=5, sampler_name="DPM++ 2M", scheduler="Uniform", width=64, height=64)
    assert np.array_equal(np.asarray(new.image), np.asarray(old.image))
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in new.info["infotexts"][0]
    assert (new.info["sampler_name"], new.info["scheduler"]) == ("DPM++ 2M", "karras")
    assert new.info["extra_generation_params"] == {"Schedule type": "Karras"}
    # A1111: no scheduler means "Automatic", DPM++ 2M's own default, which is Karras
    assert np.array_equal(np.asarray(automatic.image), np.asarray(new.image))
    assert "Schedule type: Automatic" in automatic.info["infotexts"][0]
    assert not np.array_equal(np.asarray(uniform.image), np.asarray(new.image))
    assert "Sampler: DPM++ 2M, Schedule type: Uniform," in uniform.info["infotexts"][0]


def test_options_accept_the_loaded_model_only(server):
    status, _, models = call(server, "/sdapi/v1/sd-models")
    assert call(server, "/sdapi/v1/options", {"sd_model_checkpoint": models[0]["title"]})[0] == 200
    status, _, body = call(server, "/sdapi/v1/options", {"sd_model_checkpoint": "other.safetensors [0123456789]"})
    assert status == 422 and "one model" in body["detail"]


def test_the_open_webui_flow(server):
    """What Open WebUI does (backend/open_webui/routers/images.py): options and models read, the whole
    options dict posted back with the chosen title, then a txt2img; base URL with a trailing slash."""
    base = server + "/"
    _, _, models = call(base, "/sdapi/v1/sd-models")
    status, _, options = call(base, "/sdapi/v1/options")
    assert status == 200
    options["sd_model_checkpoint"] = models[0]["title"]
    assert call(base, "/sdapi/v1/options", options)[0] == 200
    body = {"prompt": PROMPT, "batch_size": 2, "width": 64, "height": 64, "steps": 2, "negative_prompt": "blurry",
            "cfg_scale": 5, "sampler_name": "Euler a", "scheduler": "Automatic"}
    status, _, answer = call(base, "/sdapi/v1/txt2img", body)
    assert status == 200 and len(answer["images"]) == 2
    assert "Negative prompt: blurry" in json.loads(answer["info"])["infotexts"][0]


def test_png_info_reads_the_served_metadata(client):
    result = client.txt2img(prompt=PROMPT, steps=2, seed=9, sampler_name="DDIM", width=64, height=64)
    info = client.png_info(result.image)
    assert info.info == result.info["infotexts"][0]
    assert info.parameters["Seed"] == "9" and info.parameters["Prompt"] == PROMPT
    assert json.loads(info.json["items"]["ldm"])["seed"] == 9


@pytest.mark.parametrize("body,field", [
    ({"prompt": PROMPT, "steps": 0}, "steps"),
    ({"prompt": PROMPT, "cfg_scale": -1}, "cfg_scale"),
    ({"prompt": PROMPT, "width": 100}, "width 100"),
    ({"prompt": PROMPT, "width": 4096}, "width"),
    ({"prompt": PROMPT, "seed": -5}, "seed"),
    ({"prompt": PROMPT, "sampler_name": "Euler z"}, "Sampler not found"),
    ({"prompt": PROMPT, "sampler_name": "DDIM", "scheduler": "karras"}, "scheduler karras does not apply"),
    ({"prompt": PROMPT, "sampler_name": "Euler", "scheduler": "polyexponential"}, "scheduler"),
    ({"prompt": "   "}, "prompt is empty"),
    ({"prompt": PROMPT, "steps": "many"}, "steps"),
    ({"prompt": PROMPT, "batch_size": 20, "n_iter": 20}, "batch_size x n_iter"),
])
def test_bad_values_answer_422_in_a1111_shape(server, body, field):
    status, _, answer = call(server, "/sdapi/v1/txt2img", body)
    assert status == 422
    assert set(answer) == {"error", "detail", "body", "errors"}
    assert field in answer["detail"]
    assert call(server, "/sdapi/v1/options")[0] == 200  # still up


def test_bad_json_and_bad_images_answer_422(server):
    status, _, answer = call(server, "/sdapi/v1/txt2img", raw=b'{"prompt": "x",')
    assert status == 422 and "not valid JSON" in answer["detail"]
    status, _, answer = call(server, "/sdapi/v1/img2img", {"prompt": PROMPT, "init_images": ["bm90IGFuIGltYWdl"]})
    assert status == 422 and answer["detail"].startswith("init_images[0]: not an image")
    status, _, answer = call(server, "/sdapi/v1/img2img", {"prompt": PROMPT, "init_images": []})
    assert status == 422 and "init_images" in answer["detail"]


@pytest.mark.parametrize("body,field", [
    ({"enable_hr": True, "hr_resize_x": 128}, "not supported yet: hr_resize_x"),
    ({"enable_hr": True, "hr_sampler_name": "DDIM"}, "not supported yet: hr_sampler_name"),
    ({"enable_hr": True, "hr_prompt": "a blue square"}, "not supported yet: hr_prompt"),
    ({"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}, "not supported by ldm: hr_upscaler 'R-ESRGAN 4x+'"),
    ({"seed_resize_from_w": 128}, "not supported by ldm: seed_resize_from_w"),
    ({"override_settings": {"sd_vae": "other.vae.safetensors"}}, "not supported: override_settings.sd_vae"),
    ({"restore_faces": True}, "not supported by ldm: restore_faces"),
    ({"alwayson_scripts": {"ControlNet": {"args": []}}}, "always on script ControlNet not found"),
    ({"clip_skip": 2.5}, "clip_skip 2.5: must be a whole number"),
    ({"clip_skip": 13}, "clip_skip 13: must be between 1"),
    ({"clip_skip": 3}, "clip_skip 3: this model's text encoder has only 2 layers"),  # found once the model is known
    ({"enable_hr": True, "hr_scale": 9}, "hr_scale 9.0: must be between 1 and 8"),
    ({"enable_hr": True, "denoising_strength": 0}, "denoising_strength 0.0: must be above 0"),
    ({"enable_hr": True, "hr_second_pass_steps": 5000}, "hr_second_pass_steps 5000"),
    ({"subseed": 3, "subseed_strength": 1.5}, "subseed_strength 1.5"),
    ({"subseed": -7, "subseed_strength": 0.5}, "subseed -7"),
])
def test_fields_ldm_cannot_honour_answer_422_naming_them(server, body, field):
    status, _, answer = call(server, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 1, **body})
    assert status == 422 and answer["detail"].startswith(field), answer


def test_inpainting_through_the_webuiapi_client(client, init_png, tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[20:44, 24:52] = 255
    with Image.open(init_png) as image:
        init = image.copy()
    result = client.img2img(images=[init], mask_image=Image.fromarray(mask), prompt=PROMPT, steps=3, seed=2, width=64,
                            height=64, resize_mode=1, denoising_strength=0.9, inpainting_fill=1, inpaint_full_res=False)
    pixels = np.asarray(result.image.convert("RGB"))
    assert pixels.shape == (64, 64, 3)
    assert np.array_equal(pixels[:8, :8], np.asarray(init)[:8, :8])  # far from the mask: the picture's own pixels
    assert not np.array_equal(pixels[28:36, 32:44], np.asarray(init)[28:36, 32:44])  # inside: repainted
    assert json.loads(result.image.info["ldm"])["inpaint"]["mask"] == "request:mask"


def test_save_images_writes_the_png_as_ldm_generate_names_it(tiny_model, tmp_path):
    out = tmp_path / "saved"
    with running_server(tiny_model, out=out) as (url, worker):
        status, _, answer = call(url, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 2, "seed": 21, "width": 64,
                                                            "height": 64, "save_images": True})
        assert status == 200
        status, _, again = call(url, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 2, "seed": 21, "width": 64,
                                                           "height": 64, "save_images": True})
        call(url, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 1, "seed": 3, "width": 64, "height": 64})
    saved = sorted(p.name for p in out.iterdir())
    assert saved == ["a-red-square-on-a-blue-field-21-2.png", "a-red-square-on-a-blue-field-21.png"]  # never overwritten
    with Image.open(out / saved[1]) as image:
        assert image.text["parameters"] == json.loads(answer["info"])["infotexts"][0]


def test_client_defaults_are_accepted(server):
    """What webuiapi sends by default (eta 1, hires fields off, denoising_strength 0.7, ...) is not refused."""
    host, port = server.removeprefix("http://").split(":")
    defaults = webuiapi.WebUIApi(host=host, port=int(port))  # sampler "Euler a", 20 steps, 512x512
    result = defaults.txt2img(prompt=PROMPT, steps=1, width=64, height=64)
    assert len(result.images) == 1 and result.info["sampler_name"] == "Euler a"


def test_a_client_that_disconnects_does_not_stop_the_server(server):
    import socket

    body = json.dumps({"prompt": PROMPT, "steps": 30, "width": 64, "height": 64}).encode()
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"pro")  # half a body
    status, _, answer = call(server, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 2, "seed": 1, "width": 64, "height": 64})
    assert status == 200 and len(answer["images"]) == 1


def test_only_loopback_host_names_are_answered(server):
    """DNS rebinding: a page whose domain now points at 127.0.0.1 still sends its own Host, and is refused."""
    import http.client

    host, port = server.removeprefix("http://").split(":")
    for name, expected in (("evil.example", 403), (f"evil.example:{port}", 403), (f"localhost:{port}", 200),
                           (f"127.0.0.1:{port}", 200), (f"[::1]:{port}", 200)):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/sdapi/v1/options", headers={"Host": name})
        response = connection.getresponse()
        assert response.status == expected, name
        response.read()
        connection.close()


def test_progress_when_idle(server):
    status, _, progress = call(server, "/sdapi/v1/progress")
    assert status == 200
    assert {"progress", "eta_relative", "state", "current_image", "textinfo"} <= set(progress)
    assert {"job_count", "job_no", "sampling_step", "sampling_steps", "interrupted", "skipped", "job_timestamp"} <= set(progress["state"])


def test_page_is_served(server):
    status, headers, page = call(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "/sdapi/v1/" in page and 'id="prompt"' in page

