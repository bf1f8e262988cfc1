"""`ldm finetune` (and `ldm distill --method full`) under kill -9 (also during checkpoint writes),
SIGINT/SIGTERM, refused resumes."""

from __future__ import annotations

import json
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import assert_clean_failure, env, ldm, partial_files, snapshot

ARGS = ("--max-steps", "6", "--checkpoint-every", "1", "--rank", "4", "--seed", "3", "--validation-steps", "1",
        "--validation-prompt", "a red circle")


def _start(*args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ldm_cli", *map(str, args)], cwd=cwd, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _steps_logged(run: Path) -> int:
    try:
        return max(0, len((run / "train-log.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def _wait_for_steps(process: subprocess.Popen, run: Path, steps: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while _steps_logged(run) < steps:
        if process.poll() is not None:
            return  # finished (or failed) before: the caller checks
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)


def _lora(run: Path) -> dict:
    return load_file(str(run / f"{run.name}.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model, shapes_data) -> Path:
    """The same run, never interrupted."""
    where = tmp_path_factory.mktemp("reference")
    result = ldm("finetune", shapes_data, "--model", tiny_model, "-o", where / "run", *ARGS, cwd=where)
    assert result.code == 0, result.stderr[-2000:]
    return where / "run"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _kill_rounds(rounds: int, tmp_path: Path, tiny_model: Path, data: Path, reference: Path, seed: int) -> None:
    chance = random.Random(seed)
    run = tmp_path / "run"
    base = ("finetune", data, "--model", tiny_model, "-o", run, *ARGS)
    for number in range(rounds):
        process = _start(*base, *(("--resume", "latest") if number else ()), cwd=tmp_path)
        _wait_for_steps(process, run, 1)
        time.sleep(chance.uniform(0, 0.25))  # anywhere in the loop; with a checkpoint every step, often mid-write
        process.kill()
        process.communicate()
    # debris as a kill -9 during a write leaves it, and a folder a live process is writing right now
    stale = run / "checkpoints" / f".tmp-checkpoint-000004-{_dead_pid()}"
    live = run / "checkpoints" / f".tmp-checkpoint-000004-{subprocess.os.getpid()}"
    for folder in (stale, live):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "trainable.safetensors").write_bytes(b"half")
    result = ldm(*base, "--resume", "latest", cwd=tmp_path)
    assert result.code == 0, result.stderr[-3000:]
    assert not stale.exists() and live.exists()  # the dead writer's folder is cleaned, the live one kept
    live.joinpath("trainable.safetensors").unlink()
    live.rmdir()
    assert not partial_files(run), partial_files(run)
    final, expected = _lora(run), _lora(reference)
    assert final.keys() == expected.keys()
    for key in expected:
        assert (final[key] == expected[key]).all(), key  # bit for bit: the interruptions changed nothing
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_model, shapes_data, reference):
    _kill_rounds(1, tmp_path, tiny_model, shapes_data, reference, seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_many_kill_9_rounds_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_model, shapes_data, reference, seed):
    _kill_rounds(5, tmp_path, tiny_model, shapes_data, reference, seed=seed)


def test_a_refused_resume_changes_nothing(reference, tiny_model, shapes_data, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = snapshot(run)
    result = ldm("finetune", shapes_data, "--model", tiny_model, "-o", run, *ARGS, "--rank", "8", "--resume", "latest",
                 cwd=tmp_path)
    assert_clean_failure(result, 2, "--rank 4", "this run has 8")
    assert snapshot(run) == before  # run.json (finished, rank, steps, loss), logs, report: byte for byte
    newest = sorted((run / "checkpoints").iterdir())[-1]
    (newest / "trainable.safetensors").write_bytes(b"\0" * 16)  # an unreadable newest checkpoint
    before = snapshot(run)
    result = ldm("finetune", shapes_data, "--model", tiny_model, "-o", run, *ARGS, "--resume", "latest", cwd=tmp_path)
    assert_clean_failure(result, 1, f"checkpoint {newest} is unreadable")
    assert snapshot(run) == before


def test_sigterm_records_interrupted_and_its_hint_resumes_when_pasted(tmp_path, tiny_model, shapes_data):
    run = tmp_path / "run"
    process = _start("finetune", shapes_data, "--model", tiny_model, "-o", run, "--resolution", "64", "--max-steps", "150",
                     "--checkpoint-every", "1000", "--rank", "4", "--validation-steps", "1", cwd=tmp_path)
    _wait_for_steps(process, run, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted" and record["last_checkpoint"]
    hint = next(line for line in stderr.splitlines() if "continue with: " in line).split("continue with: ", 1)[1]
    assert f"--model {tiny_model}" in hint and "--resolution 64" in hint and hint.endswith("--resume latest")
    words = shlex.split(hint)
    assert words[:2] == ["ldm", "finetune"]
    result = ldm(*words[1:], cwd=tmp_path)  # exactly what the user would paste
    assert result.code == 0 and f"resumed from {record['last_checkpoint']}" in result.stderr, result.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_full_distill_sigterm_checkpoints_student_and_target_and_its_hint_resumes(tmp_path, tiny_model, shapes_data):
    run = tmp_path / "run"
    process = _start("distill", shapes_data, "--model", tiny_model, "-o", run, "--method", "full", "--max-steps", "40",
                     "--checkpoint-every", "1000", "--batch-size", "2", "--ema-decay", "0.9", cwd=tmp_path)
    _wait_for_steps(process, run, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted" and record["distilled"]["into"] == "full UNet"
    checkpoint = Path(record["last_checkpoint"])
    student, target = load_file(str(checkpoint / "trainable.safetensors")), load_file(str(checkpoint / "ema.safetensors"))
    assert student.keys() == target.keys() and "unet.time_embedding.cond_proj.weight" in student
    assert not (run / "model_index.json").exists() and not partial_files(run)  # no model folder until it finishes
    hint = next(line for line in stderr.splitlines() if "continue with: " in line).split("continue with: ", 1)[1]
    words = shlex.split(hint)
    assert words[:2] == ["ldm", "distill"] and "--method full" in hint and "--ema-decay 0.9" in hint
    result = ldm(*words[1:], cwd=tmp_path)  # exactly what the user would paste
    assert result.code == 0 and f"resumed from {checkpoint}" in result.stderr, result.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert json.loads((run / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "LCMScheduler"


def test_repeated_ctrl_c_stops_at_once_without_a_traceback(tmp_path, tiny_model, shapes_data):
    run = tmp_path / "run"
    process = _start("finetune", shapes_data, "--model", tiny_model, "-o", run, "--max-steps", "100000",
                     "--checkpoint-every", "1", "--rank", "4", cwd=tmp_path)
    _wait_for_steps(process, run, 3)
    process.send_signal(signal.SIGINT)
    time.sleep(0.03)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:  # and keep pressing Ctrl-C while it exits
        process.send_signal(signal.SIGINT)
        time.sleep(0.005)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "internal error" not in stderr and "Exception ignored" not in stderr, stderr[-2000:]
    assert "--resume latest" in stderr and f"--model {tiny_model}" in stderr
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert not partial_files(run), partial_files(run)  # a checkpoint cut short by the second Ctrl-C is removed


def test_a_run_that_failed_before_its_first_checkpoint_can_be_started_again(tmp_path, shapes_data):
    """Nothing to lose (no checkpoint, not finished, its process gone): a plain re-run is not refused."""
    from ldm_cli.training.settings import FinetuneSettings, validate_finetune
    from ldm_cli.errors import UsageError

    run = tmp_path / "run"
    run.mkdir()
    settings = FinetuneSettings(data=shapes_data, output=run)
    for record, refused in (({"status": "failed", "pid": _dead_pid()}, False),
                            ({"status": "running", "pid": _dead_pid()}, False),
                            ({"status": "running", "pid": subprocess.os.getpid()}, True),
                            ({"status": "finished"}, True)):
        (run / "run.json").write_text(json.dumps(record))
        if refused:
            with pytest.raises(UsageError, match="already holds a run"):
                validate_finetune(settings)
        else:
            validate_finetune(settings)
    (run / "run.json").write_text(json.dumps({"status": "failed"}))
    (run / "checkpoints" / "checkpoint-000001").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-000001" / "state.json").write_text("{}")
    with pytest.raises(UsageError, match="checkpoints"):
        validate_finetune(settings)


def test_the_resume_hint_repeats_every_setting_that_differs_from_its_default():
    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.training.resume_hint import resume_command
    from ldm_cli.training.settings import FinetuneSettings

    s = FinetuneSettings(data=Path("my data"), output=Path("runs/x"), rank=4, flip=True, buckets=False, lr=2e-4,
                         validation_prompts=("a b",), model=ModelSettings(model=None, offline=True))
    hint = resume_command(s, "org/model", 512, default_prompts=())
    assert shlex.split(hint) == ["ldm", "finetune", "my data", "-o", "runs/x", "--model", "org/model", "--resolution", "512",
                                 "--rank", "4", "--lr", "0.0002", "--flip", "--no-buckets", "--validation-prompt", "a b",
                                 "--offline", "--resume", "latest"]
