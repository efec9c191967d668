"""The entry point: builds the command the arguments name, runs it, and turns what went wrong
into an exit code and one line on stderr through the one map (`exit_codes`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from ..render.console import say
from .app import for_args
from .commands import COMMANDS
from .exit_codes import exit_code


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
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = for_args(COMMANDS, args)(
            args=args, prog_name="journal-doctor", standalone_mode=False
        )
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
