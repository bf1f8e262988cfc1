"""User-facing errors and the one place that turns exceptions into messages and exit codes.

A user mistake never shows a traceback: it prints one line that names the problem and the fix.
Set LDM_DEBUG=1 to see the traceback of an unexpected error.
"""

from __future__ import annotations

import errno
import os
import re
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


class OutputError(LdmError):
    """A file or folder could not be written (disk full, read-only, not a folder, ...)."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# C0 and C1 control characters (escape sequences start with ESC or CSI), DEL, the bidirectional
# overrides that reorder text on screen, and lone surrogates (bytes that were not UTF-8, from argv
# or a file name). Printed raw they can retitle the window, clear the screen or fake a line.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text, keep_newlines: bool = False) -> str:
    """Text from a file, a file name or a user, made safe to print: control characters escaped.

    Undecodable bytes (the surrogates Python uses for them) show as \\xNN, others as \\xNN / \\uNNNN."""
    def escape(match: re.Match) -> str:
        char = match.group(0)
        code = ord(char)
        if keep_newlines and char in "\n\t":
            return char
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(escape, str(text))


_OS_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.EEXIST: "something is already there",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file is too large for the file system",
    errno.EIO: "an input/output error from the device",
    errno.ENOENT: "no such file or folder",
    errno.EPIPE: "the reader closed the pipe",
}


def os_cause(exc: OSError) -> str:
    """What an OSError means, in words (errno name kept for searching)."""
    name = errno.errorcode.get(exc.errno or 0, "")
    cause = _OS_CAUSES.get(exc.errno, exc.strerror or str(exc) or type(exc).__name__)
    return f"{cause} ({name})" if name else cause


def as_os_error(exc: BaseException) -> OSError | None:
    """The OSError behind a library's own exception (safetensors says "os error 28"), else None."""
    if isinstance(exc, OSError):
        return exc
    match = re.search(r"os error (\d+)", str(exc))
    if match:
        code = int(match.group(1))
        return OSError(code, os.strerror(code))
    return None


def write_error(exc: OSError, path, hint: str = "free some space or choose another place") -> OutputError:
    """The one-line error for a failed write of `path` (the path we meant, not a temporary name)."""
    return OutputError(f"cannot write {path}: {os_cause(exc)}; {hint}")


def report(exc: BaseException) -> int:
    """Print an exception as one line on stderr and return the exit code to use."""
    if isinstance(exc, KeyboardInterrupt):
        print("ldm: interrupted; nothing partial was written", file=sys.stderr)
        return INTERRUPT_EXIT
    if isinstance(exc, LdmError):
        print(f"ldm: error: {printable(one_line(exc))}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, OSError) and exc.errno in _OS_CAUSES:  # the machine's state, not a bug: say what and where
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ldm: error: {printable(where)}{os_cause(exc)}", file=sys.stderr)
        return FAILURE_EXIT
    if os.environ.get("LDM_DEBUG"):
        raise exc
    print(
        f"ldm: internal error: {type(exc).__name__}: {printable(one_line(exc))} "
        "(re-run with LDM_DEBUG=1 for the traceback and report it)",
        file=sys.stderr,
    )
    return FAILURE_EXIT
