"""Training logs: a CSV file (always) and TensorBoard event files (when tensorboard is installed)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

FIELDS = ["step", "epoch", "loss", "lr", "images_per_s", "elapsed_s"]


class TrainLog:
    def __init__(self, output: Path, resume_step: int):
        self.path = Path(output) / "train-log.csv"
        self._keep_rows_up_to(resume_step)
        new = not self.path.exists()
        self.handle = open(self.path, "a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.handle, fieldnames=FIELDS)
        if new:
            self.writer.writeheader()
        self.tensorboard = _tensorboard_writer(Path(output) / "tensorboard", resume_step)

    def write(self, row: dict) -> None:
        try:
            self.writer.writerow({k: row[k] for k in FIELDS})
            self.handle.flush()
        except OSError as exc:  # a full disk: name the file, not just the errno
            from ldm_cli.errors import write_error

            raise write_error(exc, self.path, "free some space, then --resume latest (the checkpoints are intact)") from None
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("train/loss", row["loss"], row["step"])
            self.tensorboard.add_scalar("train/lr", row["lr"], row["step"])

    def close(self) -> None:
        self.handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def _keep_rows_up_to(self, step: int) -> None:
        """On resume, rows logged after the checkpoint would be repeated: drop them."""
        if not self.path.exists():
            return
        with open(self.path, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("step", "").isdigit() and int(r["step"]) <= step]
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


def _tensorboard_writer(folder: Path, step: int):
    try:
        import tensorboard  # noqa: F401 - only to know whether it is installed
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder), purge_step=step + 1 if step else None)
