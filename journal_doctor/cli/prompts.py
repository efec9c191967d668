"""The one way a command asks before it changes anything. In a terminal: the plan (on stderr
under --json), then one question, default No. Without a terminal it never asks: it refuses
(`Refused`, exit 1, nothing changed), saying the same two ways on for every command."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from ..errors import Interrupted, Refused


def no_terminal(action: str, forced: str, instead: str = "--dry-run to only show the plan") -> str:
    return (
        f"refusing to {action} without confirmation (stdin is not a terminal): pass --force to"
        f" {forced} or {instead}."
    )


def confirm(question: str, show: Callable[[], None], refusal: str) -> bool:
    """`refusal`: the `no_terminal` sentence. Ctrl-C at the question exits 130, nothing done."""
    if not sys.stdin.isatty():
        raise Refused(refusal)
    show()
    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:
        raise Interrupted("interrupted; nothing changed") from None
