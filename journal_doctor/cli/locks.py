"""scan, clean and watch: the locks."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UsageError
from ..model import MIN_AGE, SHARED_MIN_AGE, Outcome, OutcomeKind, ScanReport
from ..render import reports
from ..render.console import say
from .options import (
    DryRun,
    Force,
    JsonOption,
    MinAge,
    Paths,
    Quiet,
    Shared,
    SharedMinAge,
    Verbose,
    progress,
    seconds_option,
)
from .prompts import confirm, no_terminal


def scan(
    paths: Paths = None,
    json_output: JsonOption = False,
    min_age: MinAge = MIN_AGE,
    shared_min_age: SharedMinAge = SHARED_MIN_AGE,
    shared: Shared = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> int:
    """Find every Optuna journal lock, say who holds it and whether it is safe to remove;
    and every journal whose damaged tail will crash the next worker.

    Verdicts: active (a write in flight), stuck (the holder is stopped), orphaned (no holder
    can exist: clean removes it), recent (too young to judge), unknown (a holder could exist
    where this host cannot see: another host, a container, an unreadable lock). Exit 1 when an
    orphaned/stuck/unknown lock, a leftover or a damaged journal remains.
    """
    from ..locks.scan import scan as scan_core

    report = scan_core(
        paths or ".",
        min_age=min_age,
        shared_min_age=shared_min_age,
        shared=shared,
        progress=progress(verbose),
    )
    reports.scan(report, json_output, quiet)
    return 1 if report.needs_attention() else 0


class Confirmer:
    """clean's question. Remembers whether it asked, so that the plan is not printed twice."""

    def __init__(self, json_output: bool) -> None:
        self.json_output = json_output
        self.asked = False

    def __call__(self, report: ScanReport, plan: tuple[Outcome, ...]) -> bool:
        count = sum(o.outcome is OutcomeKind.WOULD_REMOVE for o in plan)
        refusal = no_terminal(f"remove {count} orphaned artifact(s)", "remove them")

        def show() -> None:
            reports.outcomes(report, plan, self.json_output)
            self.asked = True

        return confirm(f"Remove {count} orphaned artifact(s)?", show, refusal)


def clean(
    paths: Paths = None,
    dry_run: DryRun = False,
    force: Force = False,
    wait: Annotated[
        float,
        seconds_option(
            "--wait",
            "Re-scan until no write is in flight (no active/recent lock, none too young to"
            " judge), at most this long, then clean.",
            infinite="",
        ),
    ] = 0.0,
    json_output: JsonOption = False,
    min_age: MinAge = MIN_AGE,
    shared_min_age: SharedMinAge = SHARED_MIN_AGE,
    shared: Shared = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> int:
    """Scan, then remove what is orphaned (only that, --force included).

    Asks once before removing; --force skips the question; without a terminal and without
    --force it refuses. Each removal re-checks the holders and removes the lock only if it is
    still the very file that was judged. Exit 0 only when nothing blocks a resume afterwards.
    """
    from ..locks.clean import clean as clean_core

    confirm = Confirmer(json_output)
    reporter = reports.WaitReporter()
    try:
        report = clean_core(
            paths or ".",
            force=force,
            dry_run=dry_run,
            confirm=confirm,
            wait=wait,
            min_age=min_age,
            shared_min_age=shared_min_age,
            shared=shared,
            progress=progress(verbose),
            on_wait=reporter,
        )
    finally:
        reporter.close()
    reports.clean(report, json_output, quiet, asked=confirm.asked)
    return 1 if report.needs_attention() else 0


def watch(
    paths: Paths = None,
    interval: Annotated[
        float,
        seconds_option(
            "--interval", "Seconds between passes (each pass is `clean --force`).", infinite=""
        ),
    ] = 5.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per event and line, nothing else.")
    ] = False,
    min_age: MinAge = MIN_AGE,
    shared_min_age: SharedMinAge = SHARED_MIN_AGE,
    shared: Shared = False,
    fail_stale_trials: Annotated[
        bool,
        typer.Option(
            "--fail-stale-trials",
            help="Also mark FAIL the RUNNING trials whose guarded worker (journal_doctor."
            "storage) a heartbeat proves dead; nothing without that proof.",
        ),
    ] = False,
) -> int:
    """Keep healing while a fleet runs: `clean --force` every --interval, until SIGINT/SIGTERM.

    One line per event on stdout, flushed at once (--json: one object with time, event,
    path, verdict, reason): removed, stuck/unknown (first seen), cleared, conflict, failed,
    unreadable, missing (a root that vanished), trial-failed. Removes only what is orphaned,
    through the same break protocol as clean. Ends between passes, never inside a removal;
    exit 0.
    """
    import signal

    from ..watch import StopFlag
    from ..watch import watch as watch_core

    if interval <= 0:
        raise UsageError("--interval must be > 0 seconds")
    stop = StopFlag()

    def finish(signum: int, frame: object) -> None:
        stop.set()  # a plain flag: nothing a handler could wait on

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, finish)
    from ..render.advice import quoted

    # Something at once: a terminal that shows nothing until the first event looks hung.
    say(f"watching {quoted(paths or ['.'])} every {interval:g}s: one line per event;"
        " Ctrl-C ends")  # fmt: skip
    for event in watch_core(paths or ".", interval=interval, min_age=min_age,
                            shared_min_age=shared_min_age, shared=shared,
                            fail_stale_trials=fail_stale_trials, stop=stop):  # fmt: skip
        reports.watch_event(event, json_output)
    return 0
