"""The `journal-doctor` command: each command parses, calls the core, renders, exits.

Exit codes: 0 nothing blocks a resume; 1 something needs attention; 2 usage error.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Callable
from functools import cache, partial
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from ._version import __version__
from .errors import DoctorError, UsageError
from .model import Outcome, OutcomeKind, ScanReport
from .render import jsonout
from .render.text import display_path
from .scanner import ProgressEvent

EXAMPLES = """
\b
Examples:
  journal-doctor scan runs/                 # what locks are there, who holds them
  journal-doctor scan --json runs/ | jq .   # the same for scripts
  journal-doctor clean --dry-run runs/      # what would be removed, and why
  journal-doctor clean --force --wait 60 runs/ && python train.py   # pre-resume step
  journal-doctor check runs/study.log       # will Optuna load this journal?
  journal-doctor repair --force runs/study.log   # make it loadable, keep every good line
  journal-doctor trials --retry runs/study.log   # re-run trials a crash left RUNNING

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


if TYPE_CHECKING:
    from rich.console import Console


@cache
def out() -> Console:
    """stdout for people. Rich is imported only when something is rendered for people:
    `--json` and one-line errors never pay for it (start-up time is a feature of `scan`)."""
    import os

    from rich.console import Console

    # Piped output (logs of job scripts) is read later in wide viewers: do not squeeze tables
    # into Rich's 80-column default. A terminal or $COLUMNS still decides when present.
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=False, width=160 if wide else None)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)  # one message, one line


def say(message: str) -> None:
    """One line on stderr, file names escaped, no Rich needed."""
    sys.stderr.write(f"journal-doctor: {display_path(message)}\n")
    sys.stderr.flush()


T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then the exit code: never a traceback."""
    say(message)
    raise typer.Exit(code)


def run_core(call: Callable[[], T]) -> T:
    """Map the core's errors to one line and an exit code."""
    try:
        return call()
    except DoctorError as err:
        fail(str(err), err.exit_code)
    except OSError as err:
        where = str(err.filename) if err.filename else "a file"  # say() escapes it
        fail(f"{where}: {err.strerror or err}")


def _version(value: bool) -> None:
    if value:
        print(f"journal-doctor {__version__}")
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
        sys.stderr.write(f"{event.stage}: {event.total} {event.detail}".rstrip() + "\n")

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
    from .scanner import scan as scan_core

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
        from .render import table  # Rich only for people, not for --json

        table.render_scan(out(), report, quiet=quiet)
    raise typer.Exit(1 if report.needs_attention() else 0)


def _confirmer(json_output: bool, quiet: bool) -> Callable[[ScanReport, tuple[Outcome, ...]], bool]:
    def confirm(report: ScanReport, plan: tuple[Outcome, ...]) -> bool:
        count = sum(o.kind is OutcomeKind.WOULD_REMOVE for o in plan)
        if not sys.stdin.isatty():
            say(
                f"refusing to remove {count} orphaned artifact(s) without confirmation (stdin is"
                " not a terminal): pass --force to remove them or --dry-run to only show the plan."
            )
            return False
        console = err_console() if json_output else out()
        if not quiet:
            from .render import table  # Rich only for people, not for --json

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
    from .cleaner import clean as clean_core

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
            from .render import table  # Rich only for people, not for --json

            table.render_plan(out(), report.scan, report.outcomes)
        else:
            from .render import table  # Rich only for people, not for --json

            table.render_clean(out(), report, quiet=quiet)
    raise typer.Exit(1 if report.needs_attention() else 0)


Journals = Annotated[
    list[str], typer.Argument(help="Journal files.", metavar="JOURNAL...", show_default=False)
]


class LockChoice(str, enum.Enum):
    symlink = "symlink"
    open = "open"


LockOption = Annotated[
    LockChoice,
    typer.Option(
        "--lock",
        help="Lock kind to take when the journal has no lock: symlink (Optuna's default) or open"
        " (JournalFileOpenLock). An existing lock's kind always wins.",
    ),
]


def _journal_or_fail(path: str) -> None:
    import os

    if not os.path.lexists(path):
        fail(f"{display_path(path)}: no such journal; give the path of an Optuna journal file", 2)


@app.command()
def check(
    journals: Journals,
    json_output: JsonOption = False,
    quiet: Quiet = False,
) -> None:
    """Read each journal as Optuna would and say what Optuna will do with it.

    Streams the file in bounded memory, without optuna: bytes, ops, studies, trials by state,
    torn tail, fused lines, NUL runs, undecodable lines and non-op lines (line number, byte
    offset, error). Exit 0 when every journal is healthy, 1 when one is damaged.
    """
    from .integrity import check_journal

    for journal in journals:
        _journal_or_fail(journal)
    results = [run_core(partial(check_journal, journal)) for journal in journals]
    if json_output:
        print(jsonout.dumps(jsonout.check_json(results)))
    else:
        for health in results:
            from .render import table  # Rich only for people, not for --json

            table.render_health(out(), health, quiet=quiet)
    raise typer.Exit(0 if all(h.healthy for h in results) else 1)


@app.command()
def repair(
    journals: Journals,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show the plan only.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Repair without asking.")] = False,
    lock: LockOption = LockChoice.symlink,
    json_output: JsonOption = False,
) -> None:
    """Rewrite damaged journals so Optuna loads them again, keeping every good line.

    Refuses while the journal's lock is active/stuck/unknown or a live process has the journal
    open. Holds the journal's lock meanwhile (workers started now wait), copies the original to
    JOURNAL.<UTC time>.bak, cuts a torn or NUL tail, salvages the op out of a fused line, moves
    undecodable and non-op lines to JOURNAL.quarantine, checks that Optuna loads the result,
    then renames it over the journal. Exit 0 when every journal is healthy afterwards.
    """
    from .model import LockKind
    from .repair import RepairRefused, RepairReport
    from .repair import repair as repair_core

    for journal in journals:
        _journal_or_fail(journal)

    def confirm(report: RepairReport) -> bool:
        if not sys.stdin.isatty():
            raise RepairRefused(
                f"refusing to repair {report.journal} without confirmation (stdin is not a"
                " terminal): pass --force to repair it or --dry-run to only show the plan."
            )
        from .render import table  # Rich only for people, not for --json

        table.render_repair(err_console() if json_output else out(), report)
        return typer.confirm(f"Repair {display_path(report.journal)}?", default=False, err=True)

    kind = LockKind.FILE if lock is LockChoice.open else LockKind.SYMLINK
    reports = []
    code = 0
    for journal in journals:
        try:
            report = repair_core(
                journal, dry_run=dry_run, force=force, confirm=confirm, lock_kind=kind
            )
        except DoctorError as error:
            say(str(error))
            code = max(code, error.exit_code)
            continue
        except OSError as error:
            say(f"{journal}: {error.strerror or error}")
            code = 1
            continue
        reports.append(report)
        if not report.before.healthy and not report.performed:
            code = 1
    if json_output:
        print(jsonout.dumps(jsonout.repair_json(reports)))
    else:
        for report in reports:
            from .render import table  # Rich only for people, not for --json

            table.render_repair(out(), report)
    raise typer.Exit(code)


@app.command()
def trials(
    journal: Annotated[
        str, typer.Argument(help="The journal file.", metavar="JOURNAL", show_default=False)
    ],
    fail_running: Annotated[
        bool, typer.Option("--fail", help="Mark every RUNNING trial FAIL (Optuna's study.tell).")
    ] = False,
    retry: Annotated[
        bool,
        typer.Option("--retry", help="Like --fail, and enqueue each one's parameters again."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Even while a process has the journal open.")
    ] = False,
    lock: LockOption = LockChoice.symlink,
    json_output: JsonOption = False,
) -> None:
    """List trials a crash left RUNNING or WAITING; fail them, or fail and retry them.

    JournalStorage has no heartbeat, so a killed worker's trial stays RUNNING forever. A trial
    is flagged abandoned when its worker later started another trial. Run --fail/--retry only
    when no worker of the study is running (it is refused while a process has the journal open,
    and while the journal has a lock: run `clean` first).
    """
    from .model import LockKind
    from .trials import fail_trials, list_trials

    _journal_or_fail(journal)
    kind = LockKind.FILE if lock is LockChoice.open else LockKind.SYMLINK
    if fail_running or retry:
        report = run_core(lambda: fail_trials(journal, retry=retry, force=force, lock_kind=kind))
    else:
        report = run_core(lambda: list_trials(journal))
    if json_output:
        print(jsonout.dumps(jsonout.trials_json(report)))
    else:
        from .render import table  # Rich only for people, not for --json

        table.render_trials(out(), report)
    running = [t for t in report.health.open_trials if t.state == "RUNNING"]
    raise typer.Exit(1 if running else 0)


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
    from rich.text import Text

    from .demo import DemoError, run_demo

    started = time.monotonic()
    try:
        for step in run_demo(trials=trials, compare=compare):
            out().rule(Text(step.title))
            if step.detail:
                out().print(Text(display_path(step.detail)))
            if step.scan is not None:
                from .render import table  # Rich only for people, not for --json

                table.render_scan(out(), step.scan)
            if step.clean is not None:
                from .render import table  # Rich only for people, not for --json

                table.render_clean(out(), step.clean)
    except DemoError as err:
        fail(f"demo failed: {err}")
    out().rule(Text("Done"))
    out().print(Text(f"Demo finished in {time.monotonic() - started:.1f} s; nothing left behind."))


def main() -> None:
    try:
        app(prog_name="journal-doctor")
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)


__all__ = ["UsageError", "app", "main"]
