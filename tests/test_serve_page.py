"""The page at `/` in headless Chromium: it loads, a generation through it shows the image it was sent."""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from serve_helpers import call, pixels_of_b64, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs the Debian package chromium (apt-get install chromium)")
SETTINGS = {"prompt": "a red square on a blue field", "steps": 3, "seed": 5, "sampler_name": "DDIM", "cfg_scale": 7}
ZOOM = 6  # the page shows a 64-pixel image at the whole-number zoom that fits 384 px


def chromium(tmp_path, url: str, *mode: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,800", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--virtual-time-budget=60000", *mode, url],
        capture_output=True, text=True, timeout=180,
    )


def find(shot: np.ndarray, block: np.ndarray, tolerance: int = 3) -> tuple[int, int] | None:
    """Where `block` appears in `shot` (top-left corner), allowing small colour differences."""
    h, w = block.shape[:2]
    shot, block = shot.astype(int), block.astype(int)
    ys, xs = np.nonzero(np.abs(shot - block[0, 0]).max(axis=-1) <= tolerance)
    for y, x in zip(ys, xs):
        window = shot[y:y + h, x:x + w]
        if window.shape == block.shape and np.abs(window - block).max() <= tolerance:
            return int(y), int(x)
    return None


@pytest.fixture(scope="module")
def server(tiny_model):
    with running_server(tiny_model) as (url, worker):
        yield url


def test_a_generation_through_the_page_shows_the_image(server, tmp_path):
    status, _, answer = call(server, "/sdapi/v1/txt2img", SETTINGS)  # what the page should end up showing
    assert status == 200
    expected = pixels_of_b64(answer["images"][0])
    shot_path = tmp_path / "shot.png"
    done = chromium(tmp_path, f"{server}/?{urlencode({**SETTINGS, 'generate': 1})}", f"--screenshot={shot_path}")
    assert done.returncode == 0 and shot_path.exists(), done.stderr[-2000:]
    shot = np.asarray(Image.open(shot_path).convert("RGB"))
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 500  # not a blank page
    zoomed = expected.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)
    assert find(shot, zoomed) is not None, "the generated image is not on the page"
    other = np.ascontiguousarray(expected[::-1]).repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)
    assert find(shot, other) is None  # guards the search: a different picture is not found


def test_the_gallery_lists_the_image_with_its_parameters(server, tmp_path):
    done = chromium(tmp_path, f"{server}/?{urlencode({**SETTINGS, 'seed': 6, 'generate': 1})}", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'class="card"' in dom and "Re-use settings" in dom
    assert "Steps: 3, Sampler: DDIM, CFG scale: 7.0, Seed: 6, Size: 64x64" in dom
    assert "done: seed 6" in dom and "<title>ldm serve: done</title>" in dom
