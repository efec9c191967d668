"""The `journal-doctor` command: each command parses, calls the core, renders, exits.

Exit codes: 0 nothing blocks a resume; 1 something needs attention; 2 usage error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ._version import __version__
from .errors import DoctorError, UsageError
from .model import Outcome, OutcomeKind, ScanReport
from .render import jsonout, table
from .render.text import display_path
from .scan import ProgressEvent

EXAMPLES = """
\b
Examples:
  journal-doctor scan runs/                 # what locks are there, who holds them
  journal-doctor scan --json runs/ | jq .   # the same for scripts
  journal-doctor clean --dry-run runs/      # what would be removed, and why
  journal-doctor clean --force --wait 60 runs/ && python train.py   # pre-resume step

\b
Exit codes: 0 nothing blocks a resume, 1 something needs attention, 2 usage error.
"""

app = typer.Typer(
    name="journal-doctor",
    help="Heal Optuna file journals after crashes: find stale locks, judge them, remove"
    " only what is provably orphaned.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _stdout_console() -> Console:
    # Piped output (logs of job scripts) is read later in wide viewers: do not squeeze tables
    # into Rich's 80-column default. A terminal or $COLUMNS still decides when present.
    import os

    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=False, width=160 if wide else None)


stdout = _stdout_console()
stderr = Console(stderr=True, highlight=False)

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then the exit code: never a traceback."""
    stderr.print(Text(f"journal-doctor: {message}"))
    raise typer.Exit(code)


def run_core(call: Callable[[], T]) -> T:
    """Map the core's errors to one line and an exit code."""
    try:
        return call()
    except DoctorError as err:
        fail(str(err), err.exit_code)
    except OSError as err:
        where = display_path(str(err.filename)) if err.filename else "a file"
        fail(f"{where}: {err.strerror or err}")


def _version(value: bool) -> None:
    if value:
        stdout.print(f"journal-doctor {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Heal Optuna file journals after crashes."""


Paths = Annotated[
    list[str] | None,
    typer.Argument(
        help="Directories (walked recursively, symlinked dirs not followed), journals or lock"
        " files. Default: the current directory.",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine output (schema 1) on stdout, nothing else there.")
]
MinAge = Annotated[
    float,
    typer.Option(
        "--min-age",
        min=0,
        metavar="SECONDS",
        help="How old a lock with no visible holder must be on a local filesystem before it is"
        " orphaned.",
    ),
]
SharedMinAge = Annotated[
    float,
    typer.Option(
        "--shared-min-age",
        min=0,
        metavar="SECONDS",
        help="The same on a network filesystem, where holders on other hosts are invisible"
        " (default: Optuna's 30 s grace period).",
    ),
]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only the summary and next steps.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Progress on stderr.")]


def _progress(verbose: bool) -> Callable[[ProgressEvent], None] | None:
    if not verbose:
        return None

    def show(event: ProgressEvent) -> None:
        stderr.print(Text(f"{event.stage}: {event.count} {event.detail}".rstrip(), style="dim"))

    return show


@app.command(epilog=EXAMPLES)
def scan(
    paths: Paths = None,
    json_output: JsonOption = False,
    min_age: MinAge = 5.0,
    shared_min_age: SharedMinAge = 30.0,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Find every Optuna journal lock, say who holds it and whether it is safe to remove.

    Verdicts: active (a write in flight), stuck (the holder is stopped), orphaned (no holder
    can exist: clean removes it), recent (too young to judge), unknown (a holder could exist
    where this host cannot see). Exit 1 when an orphaned/stuck/unknown lock or a leftover
    remains.
    """
    from .scan import scan as scan_core

    report = run_core(
        lambda: scan_core(
            paths or ["."],
            min_age=min_age,
            shared_min_age=shared_min_age,
            progress=_progress(verbose),
        )
    )
    if json_output:
        print(jsonout.dumps(jsonout.scan_json(report)))
    else:
        table.render_scan(stdout, report, quiet=quiet)
    raise typer.Exit(1 if report.needs_attention() else 0)


def _confirmer(json_output: bool, quiet: bool) -> Callable[[ScanReport, tuple[Outcome, ...]], bool]:
    def confirm(report: ScanReport, plan: tuple[Outcome, ...]) -> bool:
        count = sum(o.kind is OutcomeKind.WOULD_REMOVE for o in plan)
        if not sys.stdin.isatty():
            stderr.print(
                Text(
                    f"journal-doctor: refusing to remove {count} orphaned artifact(s) without"
                    " confirmation (stdin is not a terminal): pass --force to remove them or"
                    " --dry-run to only show the plan."
                )
            )
            return False
        console = stderr if json_output else stdout
        if not quiet:
            table.render_plan(console, report, plan)
        return typer.confirm(f"Remove {count} orphaned artifact(s)?", default=False, err=True)

    return confirm


@app.command(epilog=EXAMPLES)
def clean(
    paths: Paths = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show the plan; remove nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Remove orphaned artifacts without asking (for job scripts)."
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0,
            metavar="SECONDS",
            help="Re-scan until no write is in flight (no active/recent lock, none too young"
            " to judge), at most this long, then clean.",
        ),
    ] = 0.0,
    json_output: JsonOption = False,
    min_age: MinAge = 5.0,
    shared_min_age: SharedMinAge = 30.0,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Scan, then remove what is orphaned (only that, --force included).

    Asks once before removing; --force skips the question; without a terminal and without
    --force it refuses. Each removal re-checks the holders and removes the lock only if it is
    still the very file that was judged. Exit 0 only when nothing blocks a resume afterwards.
    """
    from .clean import clean as clean_core

    report = run_core(
        lambda: clean_core(
            paths or ["."],
            force=force,
            dry_run=dry_run,
            confirm=_confirmer(json_output, quiet),
            wait=wait,
            min_age=min_age,
            shared_min_age=shared_min_age,
            progress=_progress(verbose),
        )
    )
    if json_output:
        print(jsonout.dumps(jsonout.clean_json(report)))
    else:
        if dry_run and not quiet:
            table.render_plan(stdout, report.scan, report.outcomes)
        else:
            table.render_clean(stdout, report, quiet=quiet)
    raise typer.Exit(1 if report.needs_attention() else 0)


@app.command()
def demo(
    trials: Annotated[int, typer.Option(min=1, help="Trials the resumed study runs.")] = 3,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare", help="Also time Optuna resuming on its own (adds its 30 s grace period)."
        ),
    ] = False,
) -> None:
    """Crash a real Optuna worker holding its lock, then scan, clean and resume, with timings.

    Runs in a temporary directory and removes it afterwards. Needs optuna (a dependency).
    """
    from .demo import DemoError, run_demo

    started = time.monotonic()
    try:
        for step in run_demo(trials=trials, compare=compare):
            stdout.rule(Text(step.title))
            if step.detail:
                stdout.print(Text(display_path(step.detail)))
            if step.scan is not None:
                table.render_scan(stdout, step.scan)
            if step.clean is not None:
                table.render_clean(stdout, step.clean)
    except DemoError as err:
        fail(f"demo failed: {err}")
    stdout.rule(Text("Done"))
    stdout.print(Text(f"Demo finished in {time.monotonic() - started:.1f} s; nothing left behind."))


def main() -> None:
    try:
        app(prog_name="journal-doctor")
    except KeyboardInterrupt:
        stderr.print(Text("journal-doctor: interrupted"))
        sys.exit(130)


__all__ = ["UsageError", "app", "main"]
