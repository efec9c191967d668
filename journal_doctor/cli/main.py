"""The one map from what went wrong to an exit code and one line on stderr (pre-commit's
`error_handler`): 0 nothing blocks a resume; 1 something needs attention; 2 usage error; 3 a
bug; 130 interrupted."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

import typer

from .._version import __version__
from ..errors import DoctorError, os_error_advice
from ..render.console import say
from .app import app


def exit_code(error: BaseException) -> tuple[int, str | None]:
    """The one map from what went wrong to (exit code, the line to print)."""
    if isinstance(error, DoctorError):
        return error.exit_code, str(error)
    if isinstance(error, (KeyboardInterrupt, typer.Abort)):
        return 130, "interrupted"
    if isinstance(error, BrokenPipeError):
        return 1, None  # the reader went away (`| head`): nothing more to say
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return 1, f"{where}{os_error_advice(error)}"
    return 3, (
        f"internal error: {type(error).__name__}: {error}; this is a bug in journal-doctor"
        f" {__version__}: please report it with the command you ran"
    )


def _usage_error() -> type[Exception]:
    """Click's base of usage errors (typer >= 0.2x vendors click as `typer._click`; older
    typers use click itself, which may or may not be installed beside a newer one)."""
    import importlib

    try:
        module = importlib.import_module("typer._click.exceptions")
    except ImportError:
        module = importlib.import_module("click.exceptions")
    found: type[Exception] = module.ClickException
    return found


def _close_matches_only(error: Exception) -> None:
    """Click suggests any option within difflib's loose 0.6 (`scan --bogus`: "--verbose");
    keep only the suggestions that look like a typo of what was typed."""
    import difflib

    name, possibilities = getattr(error, "option_name", None), getattr(error, "possibilities", None)
    if name and possibilities:
        error.possibilities = difflib.get_close_matches(name, possibilities, cutoff=0.75)  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        code = app(args=argv, prog_name="journal-doctor", standalone_mode=False)
        if code == 130:  # Typer turns Ctrl-C into a bare exit code
            say("interrupted")
    except _usage_error() as error:  # usage: bad option, bad value
        _close_matches_only(error)
        error.show()  # type: ignore[attr-defined]
        code = error.exit_code  # type: ignore[attr-defined]
    except BaseException as error:
        if isinstance(error, SystemExit):
            raise
        code, line = exit_code(error)
        if line is not None:
            say(line)
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else 0)
