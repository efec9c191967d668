"""What the commands share: options and arguments (one meaning per name everywhere), the
checks of their values, and the progress callback."""

from __future__ import annotations

import enum
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import DoctorError, NoJournal, path_error
from ..model import LockKind

if TYPE_CHECKING:
    from ..locks.scan import ProgressEvent


def _seconds(infinite: str) -> Callable[[float | None], float | None]:
    """Every duration option: NaN and negative are usage errors; `infinite` says what inf
    means for this one ("" where it means nothing useful, and is refused)."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        if math.isnan(value) or value < 0 or (math.isinf(value) and not infinite):
            meaning = f" (inf: {infinite})" if infinite else ""
            raise typer.BadParameter(f"give a number of seconds >= 0{meaning}")
        return value

    return check


def seconds_option(name: str, help: str, infinite: str = "never by age") -> Any:
    return typer.Option(name, metavar="SECONDS", callback=_seconds(infinite), help=help)


Paths = Annotated[
    list[str] | None,
    typer.Argument(
        help="Directories (walked recursively, symlinked dirs not followed), journals or lock"
        " files. Default: the current directory.",
        metavar="[PATH...]",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine output (schema 1) on stdout, nothing else there.")
]
MinAge = Annotated[
    float,
    seconds_option(
        "--min-age",
        "How old a lock with no visible holder must be on a local filesystem before it is"
        " orphaned (inf: never by age).",
    ),
]
SharedMinAge = Annotated[
    float,
    seconds_option(
        "--shared-min-age",
        "The same where holders may be invisible: a network filesystem, a directory this host"
        " exports, a container (Optuna's own grace period).",
    ),
]
Shared = Annotated[
    bool,
    typer.Option(
        "--shared",
        help="Judge every path as shared with other hosts (--shared-min-age), e.g. a directory"
        " served over sftp/sshfs, which this host cannot detect.",
    ),
]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only the summary and next steps.")]
Verbose = Annotated[
    bool, typer.Option("-v", "--verbose", help="Progress on stderr (files, processes examined).")
]
Force = Annotated[bool, typer.Option("--force", "-f", help="Do it without asking (for scripts).")]
DryRun = Annotated[bool, typer.Option("--dry-run", "-n", help="Show the plan; change nothing.")]


def progress(verbose: bool) -> Callable[[ProgressEvent], None] | None:
    if not verbose:
        return None

    def show(event: ProgressEvent) -> None:
        sys.stderr.write(f"{event.stage}: {event.total} {event.detail}".rstrip() + "\n")

    return show


Journals = Annotated[
    list[str], typer.Argument(help="Journal files.", metavar="JOURNAL...", show_default=False)
]


class LockChoice(str, enum.Enum):
    symlink = "symlink"
    open = "open"

    @property
    def kind(self) -> LockKind:
        return LockKind.FILE if self is LockChoice.open else LockKind.SYMLINK


LockOption = Annotated[
    LockChoice,
    typer.Option(
        "--lock",
        help="Lock kind to take when the journal has no lock: symlink (Optuna's default) or open"
        " (JournalFileOpenLock). An existing lock's kind always wins.",
    ),
]


def journal_or_fail(path: str) -> None:
    """A JOURNAL argument that cannot be looked at: one line saying why, and what to do."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        raise NoJournal(path) from None
    except OSError as err:
        raise DoctorError(path_error(path, err)) from None


Journal = Annotated[
    str, typer.Argument(help="The journal file.", metavar="JOURNAL", show_default=False)
]
