"""`ldm generate --mask/--outpaint`: keep-unmasked exactness, only-masked crops, outpainting,
inpainting models (folder and A1111 single file), provenance, --from, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_cli.models.loading import load_components, resolve_source
from ldm_cli.pipeline.starts import mask_ops
from ldm_cli.reference import reference_inpaint_pipeline
from ldm_cli.tiny import build_tiny_model

PROMPT = "a red circle on a blue field"
FAST = ("--steps", "3", "--seed", "7", "--scheduler", "ddim")


@pytest.fixture(scope="module")
def nine_channel_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny9") / "tiny9", seed=1, in_channels=9)


def write_pictures(folder, size=64, box=(20, 44, 14, 46)):
    x = np.zeros((size, size, 3), np.uint8)
    x[:, :] = [30, 60, 200]
    x[4:20, 30:60] = [220, 200, 20]
    x += np.random.default_rng(0).integers(0, 20, x.shape, dtype=np.uint8)
    Image.fromarray(x).save(folder / "init.png")
    mask = np.zeros((size, size), np.uint8)
    top, bottom, left, right = box
    mask[top:bottom, left:right] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    return x, mask


def read(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_default_keeps_every_pixel_outside_the_blurred_mask_exactly(ldm, tiny_model, tmp_path):
    picture, mask = write_pictures(tmp_path)
    result = ldm("generate", PROMPT, "--init-image", "init.png", "--mask", "mask.png", *FAST, "--model", tiny_model,
                 "--out", "a.png")
    assert result.code == 0, result.stderr
    out = read(tmp_path / "a.png")
    overlay = mask_ops.overlay_mask(mask_ops.gaussian_blur(mask, 4), only_masked=False)
    assert np.array_equal(out[overlay == 0], picture[overlay == 0])
    assert (overlay == 0).mean() > 0.4 and np.abs(out[mask > 0].astype(int) - picture[mask > 0]).mean() > 5
    feather = (overlay > 0) & (overlay < 255)
    assert feather.any() and not np.array_equal(out[feather], picture[feather])  # the blur blends a seam


def test_no_blur_keeps_exactly_the_unmasked_pixels_and_no_keep_gives_diffusers_pixels(ldm, tiny_model, tmp_path):
    picture, mask = write_pictures(tmp_path)
    args = ("--init-image", "init.png", "--mask", "mask.png", "--mask-blur", "0", *FAST, "--model", tiny_model)
    assert ldm("generate", PROMPT, *args, "--out", "kept.png").code == 0
    assert ldm("generate", PROMPT, *args, "--no-keep-unmasked", "--out", "raw.png").code == 0
    kept, raw = read(tmp_path / "kept.png"), read(tmp_path / "raw.png")
    assert np.array_equal(kept[mask == 0], picture[mask == 0])
    assert np.array_equal(kept[mask > 0], raw[mask > 0])
    components = load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)
    ref = reference_inpaint_pipeline(components, "ddim")(
        PROMPT, image=Image.open(tmp_path / "init.png"), mask_image=Image.open(tmp_path / "mask.png"), strength=1.0,
        num_inference_steps=3, generator=torch.Generator().manual_seed(7), output_type="np").images[0]
    assert np.abs(raw.astype(int) - np.round(ref * 255).astype(int)).max() <= 1
    assert not np.array_equal(raw[mask == 0], picture[mask == 0])  # the 4-channel blend alone is not exact


def test_provenance_and_from_rerun_the_inpainting(ldm, tiny_model, tmp_path):
    write_pictures(tmp_path)
    result = ldm("generate", PROMPT, "--init-image", "init.png", "--mask", "mask.png", "--mask-blur", "2", "--strength",
                 "0.8", "--invert-mask", *FAST, "--model", tiny_model, "--out", "a.png", "--json")
    assert result.code == 0, result.stderr
    params = Image.open(tmp_path / "a.png").text["parameters"]
    for field in ("Denoising strength: 0.8", "Mask blur: 2", "Inpaint area: Whole picture", "Masked content: original",
                  "Mask mode: Inpaint not masked"):
        assert field in params
    record = json.loads(Image.open(tmp_path / "a.png").text["ldm"])
    import hashlib

    assert record["inpaint"]["mask"] == str((tmp_path / "mask.png").resolve())
    assert record["inpaint"]["mask_sha256"] == hashlib.sha256((tmp_path / "mask.png").read_bytes()).hexdigest()
    assert record["img2img"]["strength"] == 0.8 and record["inpaint"]["invert_mask"] is True
    again = ldm("generate", "--from", "a.png", "--out", "b.png")
    assert again.code == 0, again.stderr
    assert np.array_equal(read(tmp_path / "a.png"), read(tmp_path / "b.png"))
    (tmp_path / "mask.png").rename(tmp_path / "moved.png")
    gone = ldm("generate", "--from", "a.png", "--out", "c.png")
    assert gone.code == 2 and "--mask" in gone.stderr and "no longer there" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.png").exists()


def test_only_masked_works_on_a_crop_at_the_native_size_and_pastes_it_back(ldm, tiny_model, tmp_path):
    picture, mask = write_pictures(tmp_path, size=128, box=(40, 60, 50, 70))
    result = ldm("generate", PROMPT, "--init-image", "init.png", "--mask", "mask.png", "--inpaint-area", "masked",
                 "--inpaint-padding", "8", "--mask-blur", "0", *FAST, "--model", tiny_model, "--out", "m.png", "--json")
    assert result.code == 0, result.stderr
    line = json.loads(result.stdout)
    x1, y1, x2, y2 = line["inpaint"]["crop_box"]
    assert (x1, y1, x2, y2) == (42, 32, 78, 68)  # 20x20 mask + 8 padding = 36x36, square already
    assert line["inpaint"]["work_size"] == [64, 64]  # the tiny model's native size
    out = read(tmp_path / "m.png")
    assert out.shape == (128, 128, 3)
    assert np.array_equal(out[mask == 0], picture[mask == 0])
    assert np.abs(out[mask > 0].astype(int) - picture[mask > 0]).mean() > 5
    assert "Inpaint area: Only masked, Masked area padding: 8" in Image.open(tmp_path / "m.png").text["parameters"]


@pytest.mark.parametrize("fill", ["mean", "edge"])
def test_outpaint_grows_the_canvas_keeps_the_original_and_reruns(ldm, tiny_model, tmp_path, fill):
    picture, _ = write_pictures(tmp_path)
    result = ldm("generate", PROMPT, "--init-image", "init.png", "--outpaint", "16,0,32,8", "--outpaint-fill", fill,
                 *FAST, "--model", tiny_model, "--out", "o.png")
    assert result.code == 0, result.stderr
    out = read(tmp_path / "o.png")
    assert out.shape == (72, 112, 3)
    assert np.array_equal(out[0:64, 16:80], picture)
    assert Image.open(tmp_path / "o.png").text["parameters"].count('Outpaint: "16,0,32,8"') == 1
    again = ldm("generate", "--from", "o.png", "--out", "p.png")
    assert again.code == 0, again.stderr
    assert np.array_equal(out, read(tmp_path / "p.png"))


def test_outpaint_fills_the_border_with_the_mean_colour_or_the_stretched_edge():
    from ldm_cli.pipeline.starts.outpaint import grow

    picture = np.zeros((16, 16, 3), np.uint8)
    picture[:, :8] = [200, 0, 0]
    picture[:, 8:] = [0, 0, 200]
    canvas, mask = grow(picture, None, (8, 0, 8, 0), "edge")
    assert np.array_equal(canvas[:, :8], np.broadcast_to([200, 0, 0], (16, 8, 3)))
    assert np.array_equal(canvas[:, 24:], np.broadcast_to([0, 0, 200], (16, 8, 3)))
    assert mask[:, :8].min() == 255 and mask[:, 8:24].max() == 0
    canvas, _ = grow(picture, None, (8, 0, 8, 0), "mean")
    border = canvas[:, :8].reshape(-1, 3).astype(float)
    assert np.allclose(border.mean(axis=0), [100, 0, 100], atol=25) and border[:, 0].std() > 40


def test_a_nine_channel_folder_model_inpaints_and_without_a_mask_says_it_needs_one(ldm, nine_channel_model, tmp_path):
    picture, mask = write_pictures(tmp_path)
    result = ldm("generate", PROMPT, "--init-image", "init.png", "--mask", "mask.png", "--mask-blur", "0", *FAST,
                 "--model", nine_channel_model, "--out", "n.png")
    assert result.code == 0, result.stderr
    assert np.array_equal(read(tmp_path / "n.png")[mask == 0], picture[mask == 0])
    for extra in ((), ("--init-image", "init.png")):
        refused = ldm("generate", PROMPT, *extra, *FAST, "--model", nine_channel_model)
        assert refused.code == 2 and "inpainting model" in refused.stderr and "--mask" in refused.stderr
        assert "loading" not in refused.stderr and "internal error" not in refused.stderr


def test_an_a1111_single_file_inpainting_checkpoint_is_detected(ldm, nine_channel_model, tiny_model, tmp_path):
    from tests.ldm_checkpoint import config_folder, export_single_file

    write_pictures(tmp_path)
    checkpoint = export_single_file(nine_channel_model, tmp_path / "tiny-inpainting.safetensors")
    configs = config_folder(tiny_model, tmp_path / "configs")  # a 4-channel UNet config, as the bundled SD1.5 one
    result = ldm("generate", PROMPT, "--init-image", "init.png", "--mask", "mask.png", *FAST, "--model", checkpoint,
                 "--config", configs, "--out", "s.png")
    assert result.code == 0, result.stderr
    refused = ldm("generate", PROMPT, *FAST, "--model", checkpoint, "--config", configs)
    assert refused.code == 2 and "inpainting model" in refused.stderr and "loading" not in refused.stderr


def test_the_bundled_inpainting_unet_config_is_sd15_with_nine_input_channels():
    from ldm_cli.models.inpaint_detect import INPAINTING_SUBFOLDER
    from ldm_cli.models.loading import SD15_CONFIG_DIR

    normal = json.loads((SD15_CONFIG_DIR / "unet" / "config.json").read_text())
    inpainting = json.loads((SD15_CONFIG_DIR / INPAINTING_SUBFOLDER / "config.json").read_text())
    assert inpainting["in_channels"] == 9 and normal["in_channels"] == 4
    assert {k: v for k, v in inpainting.items() if k != "in_channels"} == {k: v for k, v in normal.items() if k != "in_channels"}


def test_a_sd_v1_5_inpainting_header_is_read_without_loading_it(tmp_path):
    from safetensors.torch import save_file

    from ldm_cli.models.inpaint_detect import CONV_IN, checkpoint_in_channels

    save_file({CONV_IN: torch.zeros(320, 9, 3, 3)}, str(tmp_path / "sd-v1-5-inpainting.safetensors"))
    save_file({CONV_IN: torch.zeros(320, 4, 3, 3)}, str(tmp_path / "v1-5.safetensors"))
    assert checkpoint_in_channels(tmp_path / "sd-v1-5-inpainting.safetensors") == 9
    assert checkpoint_in_channels(tmp_path / "v1-5.safetensors") == 4


@pytest.mark.parametrize("args,needle", [
    (["--init-image", "init.png", "--mask", "black.png"], "all black: nothing would be repainted"),
    (["--init-image", "init.png", "--mask", "white.png"], "all white: everything would be repainted, which is plain img2img"),
    (["--init-image", "init.png", "--mask", "white.png", "--invert-mask"], "(inverted) is all black"),
    (["--init-image", "init.png", "--mask", "notes.png"], "the mask must be an image"),
    (["--init-image", "init.png", "--mask", "missing.png"], "--mask missing.png: no such file"),
    (["--mask", "mask.png"], "--mask needs --init-image"),
    (["--outpaint", "8,0,0,0"], "--outpaint needs --init-image"),
    (["--init-image", "init.png", "--outpaint", "10,0,0,0"], "multiple of 8"),
    (["--init-image", "init.png", "--outpaint", "0,0,0,0"], "nothing would grow"),
    (["--init-image", "init.png", "--outpaint", "8,8"], "LEFT,TOP,RIGHT,BOTTOM"),
    (["--init-image", "init.png", "--outpaint", "2000,0,0,0"], "over 2048 pixels a side"),
    (["--init-image", "init.png", "--mask-blur", "2"], "--mask-blur: only used with --mask"),
    (["--init-image", "init.png", "--mask", "mask.png", "--mask-blur", "-1"], "--mask-blur -1"),
    (["--init-image", "init.png", "--mask", "mask.png", "--inpaint-area", "all"], "--inpaint-area 'all'"),
    (["--init-image", "init.png", "--mask", "mask.png", "--inpaint-padding", "8"], "only used with --inpaint-area masked"),
    (["--init-image", "init.png", "--mask", "mask.png", "--masked-content", "noise"], "--masked-content 'noise'"),
    (["--init-image", "init.png", "--mask", "mask.png", "--outpaint-fill", "edge"], "only used with --outpaint"),
    (["--init-latents", "z.latent.safetensors", "--mask", "mask.png"], "--init-latents cannot be masked"),
])
def test_bad_masks_and_flags_exit_2_with_one_line_before_the_model_loads(ldm, tmp_path, args, needle):
    write_pictures(tmp_path)
    Image.new("L", (64, 64), 0).save(tmp_path / "black.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "white.png")
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "z.latent.safetensors").write_bytes(b"")
    result = ldm("generate", "a cat", *args, "--model", "no/such-model-here")
    assert result.code == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dry_run_shows_the_grown_canvas(ldm, tiny_model, tmp_path):
    write_pictures(tmp_path)
    result = ldm("generate", PROMPT, "--init-image", "init.png", "--mask", "mask.png", "--outpaint", "64,0,0,8",
                 "--model", tiny_model, "--dry-run", "--json")
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (plan["width"], plan["height"], plan["latent_shape"]) == (128, 72, [1, 4, 9, 16])


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sides=st.one_of(st.lists(st.integers(-16, 2100), min_size=1, max_size=5).map(lambda v: ",".join(map(str, v))),
                       st.text(max_size=8)))
def test_outpaint_property(ldm, tmp_path, sides):
    """Every --outpaint value either passes validation (then the missing model stops the run, exit 1)
    or exits 2 with one line: valid means 1 or 4 integer sides, each a multiple of 8 >= 0, not all 0,
    and the 64x64 picture grown by them within 2048 pixels a side."""
    if not (tmp_path / "init.png").exists():
        write_pictures(tmp_path)
    result = ldm("generate", "a cat", "--init-image", "init.png", f"--outpaint={sides}", "--model", "/nonexistent/model")
    try:
        values = [int(p.strip()) for p in sides.split(",")]
    except ValueError:
        values = []
    values = values * 4 if len(values) == 1 else values
    valid = (len(values) == 4 and all(v >= 0 and v % 8 == 0 for v in values) and any(values)
             and 64 + values[0] + values[2] <= 2048 and 64 + values[1] + values[3] <= 2048)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    if valid:
        assert result.code == 1 and "no such folder or file" in lines[-1], result.stderr
    else:
        assert result.code == 2 and len(lines) == 1 and lines[0].startswith("ldm: error: "), result.stderr


def test_a_mask_of_another_size_is_resized_to_the_picture_and_said(ldm, tiny_model, tmp_path):
    write_pictures(tmp_path)
    small = np.zeros((32, 32), np.uint8)
    small[10:22, 7:23] = 255
    Image.fromarray(small).save(tmp_path / "small.png")
    result = ldm("generate", PROMPT, "--init-image", "init.png", "--mask", "small.png", *FAST, "--model", tiny_model,
                 "--out", "r.png", "--json")
    assert result.code == 0, result.stderr
    assert "note: --mask: resized the mask from 32x32 to the picture's 64x64" in result.stderr
    assert json.loads(result.stdout)["inpaint"]["notes"] == ["resized the mask from 32x32 to the picture's 64x64"]


def test_a_config_folder_with_an_inpainting_unet_config_is_used_for_a_nine_channel_file(nine_channel_model, tiny_model, tmp_path):
    """The bundled SD1.5 configs work this way: unet/ (4 channels) and unet_inpainting/ (9)."""
    import shutil

    from ldm_cli.models.inpaint_detect import INPAINTING_SUBFOLDER
    from ldm_cli.models.loading import load_components, resolve_source
    from tests.ldm_checkpoint import config_folder, export_single_file

    checkpoint = export_single_file(nine_channel_model, tmp_path / "tiny-inpainting.safetensors")
    configs = config_folder(tiny_model, tmp_path / "configs")
    (configs / INPAINTING_SUBFOLDER).mkdir()
    shutil.copy(nine_channel_model / "unet" / "config.json", configs / INPAINTING_SUBFOLDER / "config.json")
    components = load_components(resolve_source(str(checkpoint)), "cpu", torch.float32, single_file_config=configs)
    reference = load_components(resolve_source(str(nine_channel_model)), "cpu", torch.float32)
    assert components.unet.config.in_channels == 9
    assert torch.equal(components.unet.conv_in.weight, reference.unet.conv_in.weight)
