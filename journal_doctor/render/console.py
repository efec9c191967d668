"""Where output goes: Rich consoles for people in a terminal, plain lines for pipes and logs,
and the one-line messages on stderr. Rich is imported only when a terminal is there: `--json`,
plain lines and one-line errors never pay for it."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from .text import display_path

if TYPE_CHECKING:
    from rich.console import Console


@cache
def out() -> Console:
    """stdout for people in a terminal."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def for_people() -> bool:
    """A terminal gets Rich tables; a pipe or a log file gets plain lines (`render.plain`)."""
    # Rich's own overrides, read here so that a pipe never imports Rich to learn it is a pipe.
    forced = os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1"
    return sys.stdout.isatty() or bool(forced)


def say(message: str) -> None:
    """One line on stderr, file names escaped, no Rich needed: one line in a log; in a
    terminal, wrapped at its width between words (a path is never broken)."""
    text = f"journal-doctor: {display_path(message)}"
    if sys.stderr.isatty():
        import shutil
        import textwrap

        width = shutil.get_terminal_size().columns
        text = textwrap.fill(text, width, subsequent_indent="  ", break_long_words=False,
                             break_on_hyphens=False)  # fmt: skip
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def echo_lines(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def print_json(document: str) -> None:
    sys.stdout.write(document + "\n")
    sys.stdout.flush()
