"""Resumable training state: model + optimizer + step in one file, written atomically."""

from __future__ import annotations

from pathlib import Path

import torch


def save_checkpoint(path: Path, model, optimizer, step: int, extra: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, **(extra or {})}, tmp)
    tmp.replace(path)  # an interrupted save never leaves a half-written checkpoint


def load_checkpoint(path: Path, model, optimizer, log=print, restore_extra=None) -> int:
    """Restore state if `path` exists; returns the step to continue from (0 for a fresh start).

    restore_extra: called with the whole saved dict, for what was saved through `extra`.
    """
    path = Path(path)
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if restore_extra is not None:
        restore_extra(state)
    log(f"resuming from {path} at step {state['step']}")
    return int(state["step"])
