"""The fault suite: the real `ldm` CLI in subprocesses, under full disks, read-only places, signals,
kill -9 and hostile files. Every failure must be one `ldm: error:` line with the right exit code,
no traceback, no internal error, the files that were there byte-identical, and no partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PARTIAL_MARKS = (".part", ".tmp", ".tmp-checkpoint-", ".tmp-model-")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("ldm: error:")]


def env(**extra) -> dict:
    """The test process's environment (PYTHONPATH included), offline, one thread, unbuffered."""
    values = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    for key, value in extra.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = str(value)
    return values


def ldm(*args, cwd: Path, stdout=None, timeout: float = 300, **env_extra) -> Result:
    """Run `python -m ldm_cli ARGS` and return its exit code and output."""
    process = subprocess.run(
        [sys.executable, "-m", "ldm_cli", *map(str, args)], cwd=cwd, env=env(**env_extra),
        stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=timeout, errors="backslashreplace", text=True,
    )
    return Result(process.returncode, process.stdout or "", process.stderr)


def assert_clean_failure(result: Result, code: int, *needles: str, lines: int = 1) -> str:
    """Exit `code`, exactly `lines` error lines, no traceback or internal error; returns the last line."""
    assert result.code == code, f"exit {result.code}, wanted {code}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "internal error" not in result.stderr, result.stderr[-3000:]
    assert len(result.error_lines) == lines, result.stderr[-3000:]
    line = result.error_lines[-1]
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder` (hidden ones too)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def partial_files(folder: Path) -> list[str]:
    """Names that only a half-finished write leaves."""
    return [str(p) for p in Path(folder).rglob("*") if any(mark in p.name for mark in PARTIAL_MARKS)]


def assert_untouched(before: dict[str, str], folder: Path, allow_new: bool = False) -> None:
    after = snapshot(folder)
    changed = [k for k in before if after.get(k) != before[k]]
    assert not changed, f"changed or lost: {changed}"
    if not allow_new:
        assert set(after) == set(before), f"new files: {sorted(set(after) - set(before))}"
    assert not partial_files(folder), partial_files(folder)


@contextlib.contextmanager
def mounted(kind: str, target: Path, size_kb: int = 0):
    """A small tmpfs (kind="tmpfs") or a read-only bind mount of `target` (kind="ro"); skips where
    mounting is not permitted (not root, or a container without CAP_SYS_ADMIN)."""
    target.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        commands = [["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(target)]]
    else:
        commands = [["mount", "--bind", str(target), str(target)], ["mount", "-o", "remount,bind,ro", str(target)]]
    done = 0
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            if done:
                subprocess.run(["umount", str(target)], capture_output=True)
            pytest.skip(f"cannot mount here ({' '.join(command)}: {result.stderr.strip() or result.returncode})")
        done += 1
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def fill(folder: Path, leave_kb: int = 8) -> None:
    """Fill a small file system until about `leave_kb` are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave_kb * 1024))


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """Four captioned 64x64 pictures, the fine-tuning data of the finetune faults."""
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("faults-data") / "data"
    root.mkdir()
    for i, (color, shape) in enumerate([("red", "circle"), ("blue", "square"), ("green", "circle"), ("red", "square")]):
        image = Image.new("RGB", (64, 64), "white")
        (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)((12, 12, 52, 52), fill=color)
        image.save(root / f"{i}.png")
        (root / f"{i}.txt").write_text(f"a {color} {shape}")
    return root


@pytest.fixture(scope="session")
def good_png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("faults-png") / "photo.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)
    return path
