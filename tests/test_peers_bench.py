"""benchmarks/peers.py's own parts on the tiny model: the ldm worker's protocol and the inputs it
shares with the OpenVINO rows, and the text-encoder key rewrite the older transformers needs.
Timings are not checked here (they are the benchmark's output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def test_ldm_worker_times_2_and_6_steps_and_saves_ldms_own_6_step_picture(tiny_model, tmp_path):
    from benchmarks.peer_protocol import GUIDANCE, PROMPT
    from benchmarks.peers import write_inputs
    from ldm_cli.models.loading import load_components, resolve_source
    from ldm_cli.pipeline.generation import SamplingPlan, TextToImage

    work = write_inputs(tiny_model, tmp_path / "work", 64, seed=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.peer_ldm", "--dtype", "fp32", "--model", str(tiny_model),
                           "--size", "64", "--threads", "1", "--seed", "3", "--work", str(work), "--row", "ldm-fp32"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["steps"] == [2, 6] and report["dtype"] == "fp32" and report["threads"] == 1
    assert report["noise_matches_noise_npy"] is True  # the OpenVINO rows start from ldm's own noise
    assert report["long_s"] > report["short_s"] > 0
    components = load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)
    expected = TextToImage(components, "cpu", torch.float32).generate(
        PROMPT, 3, SamplingPlan(64, 64, 6, GUIDANCE, "ddim")).pixels
    np.testing.assert_array_equal(np.load(work / "ldm-fp32.npy"), expected)


def test_classic_text_keys_folder_holds_the_same_text_encoder(tiny_model, tmp_path):
    import shutil

    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    from benchmarks.peers import classic_text_keys

    folder = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    classic = classic_text_keys(folder)
    keys = load_file(classic / "text_encoder" / "model.safetensors").keys()
    assert keys and all(k.startswith("text_model.") for k in keys)
    assert (classic / "unet").resolve() == (folder / "unet").resolve()
    original = CLIPTextModel.from_pretrained(folder / "text_encoder").state_dict()
    rewritten = CLIPTextModel.from_pretrained(classic / "text_encoder").state_dict()
    assert original.keys() == rewritten.keys()
    for name, value in original.items():
        torch.testing.assert_close(rewritten[name], value, rtol=0, atol=0)
