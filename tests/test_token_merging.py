"""Token merging (models/token_merging.py): tomesd's algorithm at A1111's settings, off by default."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_cli.models.token_merging import Matching, cells, merging_tokens


@pytest.fixture(scope="module")
def unet(tiny_model):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_model / "unet").eval()


def _call(unet, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, unet.config.in_channels, h, w, generator=g)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor(500), encoder_hidden_states=text, return_dict=False)[0]


def test_cells_put_one_destination_in_each_whole_2x2_cell():
    destinations, sources = cells(5, 4, "cpu")
    assert destinations.tolist() == [0, 2, 8, 10]  # rows 0 and 2, cols 0 and 2; row 4 has no whole cell
    assert sorted(destinations.tolist() + sources.tolist()) == list(range(20))


def test_merge_then_unmerge_gives_every_merged_token_its_destination():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 36, 5, generator=g)
    matching = Matching(x, 6, 6, 0.5)
    merged = matching.merge(x)
    assert merged.shape == (2, 36 - 18, 5)
    back = matching.unmerge(merged)
    destinations = back[:, matching.destinations]
    for b in range(2):
        for source, partner in zip(matching.merged[b], matching.partner[b]):
            torch.testing.assert_close(back[b, matching.sources[source]], destinations[b, partner])
        for source in matching.kept[b]:  # unmerged sources pass through unchanged
            torch.testing.assert_close(back[b, matching.sources[source]], x[b, matching.sources[source]])


@pytest.mark.parametrize("size", [(8, 8), (7, 5)])
def test_equals_tomesd_at_a1111_settings(unet, size):
    tomesd = pytest.importorskip("tomesd", reason="tomesd (the test extra) is the reference implementation")
    plain = _call(unet, *size)
    with merging_tokens(unet, 0.5):
        ours = _call(unet, *size)
    assert torch.equal(_call(unet, *size), plain)  # the hooks are gone afterwards
    tomesd.apply_patch(unet, ratio=0.5, use_rand=False)  # A1111's defaults: max_downsample 1, 2x2, attn only
    try:
        theirs = _call(unet, *size)
    finally:
        tomesd.remove_patch(unet)
    assert not torch.allclose(ours, plain, atol=1e-3)  # it does change the self-attention
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_ratio_zero_installs_nothing(unet):
    with merging_tokens(unet, 0.0):
        assert not unet._forward_pre_hooks


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float64)


def test_cli_records_and_replays_the_ratio(ldm, tiny_model, tmp_path):
    common = ("a red circle", "--model", tiny_model, "--steps", "6", "--seed", "3")
    assert ldm("generate", *common, "--out", "plain.png").code == 0
    result = ldm("generate", *common, "--token-merging", "0.5", "--out", "merged.png")
    assert result.code == 0, result.stderr
    plain, merged = _pixels(tmp_path / "plain.png"), _pixels(tmp_path / "merged.png")
    assert not np.array_equal(plain, merged)
    png = Image.open(tmp_path / "merged.png")
    assert json.loads(png.text["ldm"])["settings"]["token_merging"] == 0.5
    assert "Token merging ratio: 0.5" in png.text["parameters"]
    again = ldm("generate", "--from", "merged.png", "--out", "again.png")
    assert again.code == 0 and np.array_equal(_pixels(tmp_path / "again.png"), merged)


def test_a1111_infotext_ratio_is_honoured(ldm, tiny_model, tmp_path):
    assert ldm("generate", "a red circle", "--model", tiny_model, "--steps", "4", "--seed", "5",
               "--token-merging", "0.3", "--out", "ours.png").code == 0
    infotext = Image.open(tmp_path / "ours.png").text["parameters"]
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", infotext)  # an A1111-only file: no ldm record
    Image.open(tmp_path / "ours.png").save(tmp_path / "a1111.png", pnginfo=info)
    result = ldm("generate", "--from", "a1111.png", "--model", tiny_model, "--out", "replayed.png")
    assert result.code == 0, result.stderr
    assert "Token merging" not in result.stderr  # honoured, not warned about
    assert json.loads(Image.open(tmp_path / "replayed.png").text["ldm"])["settings"]["token_merging"] == 0.3
    assert np.array_equal(_pixels(tmp_path / "replayed.png"), _pixels(tmp_path / "ours.png"))


@pytest.mark.parametrize("value", ["0.95", "-0.1", "nan"])
def test_bad_ratio_is_refused(ldm, tiny_model, value):
    result = ldm("generate", "a cat", "--model", tiny_model, "--token-merging", value)
    assert result.code == 2 and "--token-merging" in result.stderr and "0.5 is typical" in result.stderr


def test_a_unet_without_full_resolution_attention_says_so(ldm):
    result = ldm("generate", "a red circle", "--model", "demo", "--steps", "2", "--token-merging", "0.5", "--out", "d.png")
    assert result.code == 0, result.stderr
    assert "--token-merging 0.5 ignored" in result.stderr and "full latent resolution" in result.stderr
    assert json.loads(Image.open("d.png").text["ldm"])["settings"]["token_merging"] == 0.0
