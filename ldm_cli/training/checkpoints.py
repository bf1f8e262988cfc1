"""Crash-safe checkpoints: written to a temporary folder and renamed into place when complete.

    OUT/checkpoints/checkpoint-000100/
        trainable.safetensors   the trained weights (LoRA adapters, or the whole UNet)
        ema.safetensors         EMA of those weights (full fine-tuning)
        rng.safetensors         every process's noise generator and torch RNG state
        optimizer.pt            optimizer (and fp16 grad scaler) state
        state.json              step, data position, settings; written last

A folder named checkpoint-NNNNNN exists only once everything in it is on disk, so `latest`
never picks a half-written one; older checkpoints are pruned only after the new one is in place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ldm_cli.errors import LdmError, as_os_error, write_error
from ldm_cli.files.modes import give_normal_mode

FORMAT = 1
_NAME = re.compile(r"^checkpoint-(\d+)$")
TMP_PREFIX = ".tmp-checkpoint-"
_TMP_NAME = re.compile(r"^\.tmp-checkpoint-\d+-(\d+)$")  # the writer's process id comes last


def checkpoints_dir(output: Path) -> Path:
    return Path(output) / "checkpoints"


def list_checkpoints(output: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    folder = checkpoints_dir(output)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(output: Path) -> Path | None:
    found = list_checkpoints(output)
    return found[-1] if found else None


def save_checkpoint(output: Path, step: int, tensors: dict, objects: dict, state: dict, keep: int) -> Path:
    """Write a complete checkpoint for `step`, then prune to the newest `keep`. Returns its folder.

    A failed or interrupted write removes its temporary folder; a full or read-only disk raises
    OutputError naming the checkpoint, and the checkpoints already there stay as they were."""
    final = checkpoints_dir(output) / f"checkpoint-{step:06d}"
    if (final / "state.json").is_file():
        return final  # this step is already safe on disk
    remove_stale_temporaries(output)
    tmp = checkpoints_dir(output) / f"{TMP_PREFIX}{step:06d}-{os.getpid()}"
    try:
        _write_temporary(tmp, tensors, objects, state)
        if final.exists():  # a leftover without state.json: never complete, safe to replace
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as exc:  # noqa: BLE001 - also Ctrl-C: never leave a half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        cause = as_os_error(exc) if isinstance(exc, Exception) else None
        if cause is not None:
            raise write_error(cause, final, "free some space (checkpoints already saved are intact), then --resume latest") from None
        raise
    _fsync_dir(final.parent)
    for old in list_checkpoints(output)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_temporary(tmp: Path, tensors: dict, objects: dict, state: dict) -> None:
    import torch
    from safetensors.torch import save_file

    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, weights in tensors.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / f"{name}.safetensors"))
    for name, obj in objects.items():
        with open(tmp / f"{name}.pt", "wb") as handle:  # through a Python file, so a full disk is an OSError
            torch.save(obj, handle)
    (tmp / "state.json").write_text(json.dumps({"format": FORMAT, **state}, indent=2, sort_keys=True))
    give_normal_mode(tmp)  # safetensors writes 0600; a checkpoint is the user's file like any other
    _fsync_folder(tmp)


def remove_stale_temporaries(output: Path) -> list[Path]:
    """Delete `.tmp-checkpoint-NNNNNN-PID` folders whose process is gone (left by a kill during a write);
    a live process's folder (another run writing now) is left alone. Returns what was removed."""
    from ldm_cli.files.images import process_alive

    folder = checkpoints_dir(output)
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.glob(f"{TMP_PREFIX}*"):
        match = _TMP_NAME.match(path.name)
        if match and not process_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def load_checkpoint(folder: Path) -> tuple[dict, dict, dict]:
    """(state, tensors by file name, objects by file name) of a complete checkpoint."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        state = json.loads((folder / "state.json").read_text())
        tensors = {p.stem: load_file(str(p)) for p in sorted(folder.glob("*.safetensors"))}
        objects = {p.stem: torch.load(p, map_location="cpu", weights_only=True) for p in sorted(folder.glob("*.pt"))}
    except Exception as exc:  # noqa: BLE001 - json, safetensors and torch raise many types
        raise LdmError(f"checkpoint {folder} is unreadable ({' '.join(str(exc).split())[:200]}); "
                       "pass an older checkpoint to --resume") from None
    if state.get("format") != FORMAT:
        raise LdmError(f"checkpoint {folder} has format {state.get('format')!r}, expected {FORMAT}")
    return state, tensors, objects


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
