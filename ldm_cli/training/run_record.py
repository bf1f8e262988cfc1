"""run.json and data-report.json: the record of a fine-tuning run, written atomically.

run.json says "running" while the loop runs, then "finished", "interrupted" (a signal; the
checkpoint it saved, if any) or "failed" (with the error). It is first written only after the
run was accepted (a refused --resume leaves the old record byte for byte), and only the process
that wrote it records how the run ended.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ldm_cli.training.settings import FinetuneSettings


def write_run_files(s: FinetuneSettings, report, components, resolution: int, distilled: dict | None = None) -> None:
    """`distilled`: what `ldm distill` made of which model (training.distillation.Distillation.record)."""
    from ldm_cli.errors import write_error

    try:
        s.output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, s.output, "choose another --output") from None
    write_json(s.output / "data-report.json", report.to_dict())
    record = {"status": "running", "command": getattr(s, "command", "ldm finetune"), "pid": os.getpid(), "settings": s.to_record(),
              "resolution": resolution, "model": {"spec": components.source.spec, "kind": components.source.kind},
              "data": report.to_dict()}
    if distilled is not None:
        record["distilled"] = distilled
    write_json(s.output / "run.json", record)


def finish_run_file(s: FinetuneSettings, run, result: Path, grid: Path | None) -> None:
    record = json.loads((s.output / "run.json").read_text())
    record.update(status="finished", steps=run.step, final_loss=run.last_loss, output=str(result),
                  validation_grid=str(grid) if grid else None, settings=s.to_record())
    write_json(s.output / "run.json", record)


def write_json(path: Path, record: dict) -> None:
    """Atomically: the old file stays whole until the new one is complete (a full disk keeps the old)."""
    from ldm_cli.errors import write_error

    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(record, indent=2, default=str))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(exc, path) from None


def resume_hint(run) -> str:
    from ldm_cli.training.resume_hint import resume_command

    s = run.settings
    return resume_command(s, s.model.model or run.components.source.spec, s.resolution or run.components.native_size,
                          _default_validation_prompts())


def _default_validation_prompts() -> tuple[str, ...]:
    from ldm_cli.training.settings import default_validation_file

    path = default_validation_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path is not None else []
    except (OSError, UnicodeDecodeError):
        return ()
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def record_status(run, status: str, **extra) -> None:
    """Write how the run ended into run.json (only a run.json this process wrote); never masks the error."""
    if not run.recording:
        return
    path = run.settings.output / "run.json"
    try:
        record = json.loads(path.read_text())
        record.update(status=status, steps=run.step, last_checkpoint=str(run.last_checkpoint) if run.last_checkpoint else None,
                      final_loss=run.last_loss if math.isfinite(run.last_loss) else None, **extra)
        write_json(path, record)
    except Exception:  # noqa: BLE001 - a full disk may refuse even this; the error itself is what the user must see
        pass
