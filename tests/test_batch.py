"""Many prompts across processes (pipeline/batch.py): sharding, the manifest, --resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ldm_cli.pipeline.batch import MANIFEST_NAME, read_manifest

PROMPTS = "a red circle\na blue square\na red circle\n"  # a repeated prompt gets a -2 name, deterministically
ARGS = ("--steps", "2", "--seed", "7", "-n", "2", "--dim", "64")


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.setdefault("LDM_CACHE_DIR", str(tmp_path / "cache"))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


def test_one_process_writes_a_manifest_and_deterministic_names(ldm, tiny_model, tmp_path):
    (tmp_path / "p.txt").write_text(PROMPTS)
    result = ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, *ARGS, "--out", "one")
    assert result.code == 0, result.stderr
    lines = read_manifest(tmp_path / "one" / MANIFEST_NAME)
    assert [(l["job"], l["prompt"], l["seed"]) for l in lines] == [
        (0, "a red circle", 7), (1, "a red circle", 8), (2, "a blue square", 7), (3, "a blue square", 8),
        (4, "a red circle", 7), (5, "a red circle", 8)]
    assert [Path(l["path"]).name for l in lines] == [
        "a-red-circle-7.png", "a-red-circle-8.png", "a-blue-square-7.png", "a-blue-square-8.png",
        "a-red-circle-7-2.png", "a-red-circle-8-2.png"]
    assert lines[0]["settings"]["steps"] == 2 and lines[0]["settings"]["width"] == 64
    assert np.array_equal(_pixels(tmp_path / lines[0]["path"]), _pixels(tmp_path / lines[4]["path"]))
    # A second run into the same folder without --resume is refused, naming the fix.
    again = ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, *ARGS, "--out", "one")
    assert again.code == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr


def test_resume_makes_only_the_missing_images(ldm, tiny_model, tmp_path):
    (tmp_path / "p.txt").write_text(PROMPTS)
    assert ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, *ARGS, "--out", "run").code == 0
    manifest = tmp_path / "run" / MANIFEST_NAME
    lines = read_manifest(manifest)
    kept = {l["path"]: _pixels(tmp_path / l["path"]) for l in lines}
    before = {p: (tmp_path / p).stat().st_mtime_ns for p in kept}
    # Lose two images: one deleted; one whose manifest line was never written (killed after the PNG).
    (tmp_path / lines[1]["path"]).unlink()
    gone = lines[1]["path"]
    manifest.write_text("".join(json.dumps(l) + "\n" for l in lines if l["job"] != 3) + '{"torn line')
    result = ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, *ARGS, "--out", "run", "--resume", "--json")
    assert result.code == 0, result.stderr
    made = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    assert made == [gone]  # job 3's file was adopted from its own PNG record, not made again
    assert np.array_equal(_pixels(tmp_path / gone), kept[gone])
    for path, mtime in before.items():
        if path != gone:
            assert (tmp_path / path).stat().st_mtime_ns == mtime
    assert sorted(l["job"] for l in read_manifest(manifest)) == [0, 1, 2, 3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "run").glob("*.png")) == sorted(Path(p).name for p in kept)
    # Resuming a finished run makes nothing; --resume without --seed takes the seed from the manifest.
    done = ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, "--steps", "2", "-n", "2", "--dim", "64",
               "--out", "run", "--resume", "--json")
    assert done.code == 0 and done.stdout.strip() == "", done.stderr


def test_resume_refuses_a_folder_made_from_other_prompts(ldm, tiny_model, tmp_path):
    (tmp_path / "p.txt").write_text(PROMPTS)
    (tmp_path / "q.txt").write_text("a green triangle\n")
    assert ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, *ARGS, "--out", "run").code == 0
    result = ldm("generate", "--prompts-file", "q.txt", "--model", tiny_model, *ARGS, "--out", "run", "--resume")
    assert result.code == 2 and "another run" in result.stderr and "Traceback" not in result.stderr


def test_two_processes_make_the_same_images_as_one(ldm, tiny_model, tmp_path):
    (tmp_path / "p.txt").write_text(PROMPTS)
    assert ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, *ARGS, "--out", "one").code == 0
    launcher = Path(sys.executable).with_name("accelerate")
    result = subprocess.run(
        [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "ldm_cli", "generate", "--prompts-file", str(tmp_path / "p.txt"),
         "--model", str(tiny_model), *ARGS, "--out", str(tmp_path / "two"), "--device", "cpu"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one = read_manifest(tmp_path / "one" / MANIFEST_NAME)
    two = read_manifest(tmp_path / "two" / MANIFEST_NAME)
    raw = (tmp_path / "two" / MANIFEST_NAME).read_text().splitlines()
    assert len(raw) == 6 and all(json.loads(line) for line in raw)  # each image written once, lines whole
    assert [(l["job"], l["prompt"], l["seed"], Path(l["path"]).name) for l in two] == [
        (l["job"], l["prompt"], l["seed"], Path(l["path"]).name) for l in one]
    for a, b in zip(one, two):
        assert np.array_equal(_pixels(tmp_path / a["path"]), _pixels(b["path"]))
    assert sorted(p.name for p in (tmp_path / "two").glob("*.png")) == sorted(Path(l["path"]).name for l in one)
    assert not list((tmp_path / "two").glob(".ldm-*"))


def test_a_prompts_file_into_one_png_name_is_no_batch_and_resume_needs_a_folder(ldm, tiny_model, tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    result = ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, "--steps", "1", "--seed", "1", "--out", "x.png")
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("x*.png")) == ["x-2.png", "x.png"] and not (tmp_path / MANIFEST_NAME).exists()
    refused = ldm("generate", "--prompts-file", "p.txt", "--model", tiny_model, "--seed", "1", "--out", "y.png", "--resume")
    assert refused.code == 2 and "pass a folder" in refused.stderr


def test_a_killed_run_resumes_where_it_stopped(ldm, tiny_model, tmp_path):
    import signal
    import time

    (tmp_path / "p.txt").write_text("".join(f"prompt number {i}\n" for i in range(8)))
    args = ["generate", "--prompts-file", str(tmp_path / "p.txt"), "--model", str(tiny_model), "--steps", "3",
            "--seed", "1", "--dim", "64", "--out", str(tmp_path / "run")]
    process = subprocess.Popen([sys.executable, "-m", "ldm_cli", *args], env=_env(tmp_path), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = tmp_path / "run" / MANIFEST_NAME
    try:
        deadline = time.monotonic() + 240
        while len(read_manifest(manifest)) < 2:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no image was made"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    before = {line["job"]: line for line in read_manifest(manifest)}
    assert 2 <= len(before) < 8
    result = ldm(*args[:-2], "--out", str(tmp_path / "run"), "--resume", "--json")
    assert result.code == 0, result.stderr
    made = [json.loads(line)["prompt"] for line in result.stdout.splitlines()]
    # all the missing ones, less at most one whose PNG was in place before its line (adopted, not re-made)
    assert 8 - len(before) - 1 <= len(made) <= 8 - len(before)
    assert not {line["prompt"] for line in before.values()} & set(made)
    lines = read_manifest(manifest)
    assert [line["job"] for line in lines] == list(range(8))
    pngs = sorted((tmp_path / "run").glob("*.png"))
    assert sorted(p.name for p in pngs) == sorted(Path(line["path"]).name for line in lines)
    for path in pngs:
        assert json.loads(Image.open(path).text["ldm"])["seed"] == 1  # every file complete, with its record
