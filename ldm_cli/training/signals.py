"""Ctrl-C and SIGTERM during fine-tuning.

The first signal asks the loop to finish its step, save a checkpoint and exit; the second stops at
once (KeyboardInterrupt); any more while the run is stopping are ignored, so the clean-up runs to
the end and no traceback appears.
"""

from __future__ import annotations

import signal
import sys

_PREVIOUS: dict = {}


def install_signals(run) -> None:
    """First Ctrl-C / SIGTERM: finish the step, save a checkpoint, exit. A second one stops at once;
    any more while stopping are ignored, so the clean-up runs to the end and no traceback appears."""

    def handler(signum, frame):
        run.stop_signal.append(signal.Signals(signum).name)
        if len(run.stop_signal) == 2:
            raise KeyboardInterrupt
        if len(run.stop_signal) == 1:
            print(f"\nldm: {signal.Signals(signum).name} received; saving a checkpoint after this step "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        _PREVIOUS[sig] = signal.signal(sig, handler)
    _STOPPING.clear()
    _STOPPING.append(run.stop_signal)


_STOPPING: list = []


def restore_signals() -> None:
    """Give the signals back; after a stop signal keep ignoring them until the process has exited.

    SIG_IGN rather than a Python handler: at exit the interpreter resets its own handlers to the
    default, and a late Ctrl-C would then kill the process (exit -2) after it had cleaned up."""
    stopping = bool(_STOPPING and _STOPPING[0])
    while _PREVIOUS:
        sig, previous = _PREVIOUS.popitem()
        signal.signal(sig, signal.SIG_IGN if stopping else previous)
