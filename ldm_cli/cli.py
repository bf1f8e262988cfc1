"""The `ldm` command: a Typer app assembled from one module per command group.

Heavy libraries (torch, diffusers, transformers) are imported inside the commands, so
`ldm --help` answers at once.
"""

from __future__ import annotations

import sys

import typer

from ldm_cli.commands import distill, finetune, generate, grid, info, serve
from ldm_cli.commands import inspect as inspect_commands
from ldm_cli.commands import encode as encode_commands
from ldm_cli.commands import demo as demo_commands
from ldm_cli.commands import explain as explain_commands
from ldm_cli.errors import INTERRUPT_EXIT, USAGE_EXIT, OutputError, os_cause, report

app = typer.Typer(
    name="ldm",
    help="Latent diffusion text-to-image: generate, encode, decode, finetune.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
generate.register(app)
grid.register(app)
info.register(app)
inspect_commands.register(app)
finetune.register(app)
distill.register(app)
encode_commands.register(app)
demo_commands.register(app)
explain_commands.register(app)
serve.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and map every failure to one line and an exit code."""
    argv = sys.argv[1:] if argv is None else argv
    real_stdout = sys.stdout
    sys.stdout = _GuardedStream(real_stdout)
    try:
        result = app(args=argv, prog_name="ldm", standalone_mode=False)
        sys.stdout.flush()  # a full disk or closed pipe on stdout shows here, not at interpreter exit
    except typer.Abort:
        sys.exit(report(KeyboardInterrupt()))
    except typer.exceptions.TyperException as exc:  # bad flags or values found by the parser
        sys.exit(_usage_error(exc))
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if isinstance(exc, SystemExit):
            raise
        sys.exit(report(exc))
    finally:
        sys.stdout = real_stdout
    if result == INTERRUPT_EXIT:  # Typer turns Ctrl-C inside a command into Exit(130)
        sys.exit(report(KeyboardInterrupt()))
    sys.exit(result if isinstance(result, int) else 0)


class _GuardedStream:
    """stdout that turns a failed write (/dev/full, a closed pipe) into one OutputError line."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._guard(self._stream.write, text)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def _guard(self, call, *args):
        try:
            return call(*args)
        except OSError as exc:
            _silence_stdout(self._stream)
            raise OutputError(f"cannot write to standard output: {os_cause(exc)}") from None


def _silence_stdout(stream) -> None:
    """After stdout failed, point fd 1 at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    try:
        if stream.fileno() == 1:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _usage_error(exc) -> int:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "ldm"
    print(f"ldm: error: {' '.join(message.split())} (see '{command} --help')", file=sys.stderr)
    return getattr(exc, "exit_code", USAGE_EXIT) or USAGE_EXIT
