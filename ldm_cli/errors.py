"""User-facing errors and the one place that turns exceptions into messages and exit codes.

A user mistake never shows a traceback: it prints one line that names the problem and the fix.
Set LDM_DEBUG=1 to see the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys

USAGE_EXIT = 2  # bad flags or values, detected before any model loads
FAILURE_EXIT = 1  # the run could not be done (model missing, corrupt file, NaN, ...)
INTERRUPT_EXIT = 130


class LdmError(Exception):
    """An error the user can act on; its message is printed as one line."""

    exit_code = FAILURE_EXIT


class UsageError(LdmError):
    """A flag or value is invalid; raised by validation before anything heavy happens."""

    exit_code = USAGE_EXIT


class ModelError(LdmError):
    """The model could not be found, read or trusted."""


class GenerationError(LdmError):
    """Sampling produced something we refuse to write (NaN/inf pixels)."""


class InputFileError(LdmError):
    """An input file (image, latents, metadata) is missing, unreadable or corrupt."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def report(exc: BaseException) -> int:
    """Print an exception as one line on stderr and return the exit code to use."""
    if isinstance(exc, KeyboardInterrupt):
        print("ldm: interrupted; nothing partial was written", file=sys.stderr)
        return INTERRUPT_EXIT
    if isinstance(exc, LdmError):
        print(f"ldm: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    if os.environ.get("LDM_DEBUG"):
        raise exc
    print(
        f"ldm: internal error: {type(exc).__name__}: {one_line(exc)} "
        "(re-run with LDM_DEBUG=1 for the traceback and report it)",
        file=sys.stderr,
    )
    return FAILURE_EXIT
