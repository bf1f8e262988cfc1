"""A batch of input files for `ldm encode` and `ldm decode`: a bad file is named and skipped, the batch
fails at the end; progress and messages go to stderr."""

from __future__ import annotations

import sys
from pathlib import Path

from ldm_cli.errors import InputFileError, one_line, printable


def say(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)


class Batch:
    """The bad files of a batch: each named with its reason as found, one summary line at the end (exit 1).

    Only InputFileError is per file; anything else (disk full, interrupt) stops the whole batch."""

    def __init__(self, what: str, done: str, total: int):
        self.what, self.done, self.total = what, done, total
        self.bad: list[tuple[Path, str]] = []

    def attempt(self, path: Path, work, *args):
        try:
            return work(*args)
        except InputFileError as exc:
            if self.total == 1:
                raise
            self.bad.append((path, str(exc)))
            say(f"ldm: error: {printable(one_line(exc))}")
            return None

    def stop_if_nothing_left(self, good: list) -> None:
        if self.bad and not good:
            raise InputFileError(f"none of the {self.total} {self.what} could be used ({self._names()}); nothing written")

    def finish(self) -> None:
        if self.bad:
            written = self.total - len(self.bad)
            raise InputFileError(f"{len(self.bad)} of {self.total} {self.what} were not {self.done} ({self._names()}; "
                                 f"reasons above); the other {written} were")

    def _names(self, limit: int = 5) -> str:
        names = [str(p) for p, _ in self.bad[:limit]]
        more = f" and {len(self.bad) - limit} more" if len(self.bad) > limit else ""
        return ", ".join(names) + more


def progress(items, desc: str):
    """A progress bar on stderr for two or more files."""
    if len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="image", file=sys.stderr, leave=False, dynamic_ncols=True)
