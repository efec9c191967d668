"""Each command's report, in the form its reader needs: `--json` for scripts, Rich tables for
people in a terminal, plain (logfmt) lines for pipes and logs. The CLI calls one function per
command; the formats themselves live in `jsonout`, `table`, `journal` and `plain`."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..model import CleanReport, Outcome, ScanReport
from . import jsonout
from .console import echo_lines, err_console, for_people, out, print_json, say
from .text import display_path

if TYPE_CHECKING:
    from rich.console import Console

    from ..actions.migrate import MigrateReport
    from ..actions.repair import RepairReport
    from ..actions.trials import TrialsReport
    from ..demo import DemoStep
    from ..journal.check import JournalHealth
    from ..watch import WatchEvent


def question_console(json_output: bool) -> Console:
    """Where a plan shown before a question goes: stderr under --json (stdout is the document)."""
    return err_console() if json_output else out()


def scan(report: ScanReport, json_output: bool, quiet: bool) -> None:
    if json_output:
        print_json(jsonout.dumps(jsonout.scan_json(report)))
    elif for_people():
        from . import table

        table.render_scan(out(), report, quiet=quiet)
    else:
        from . import plain

        echo_lines(plain.scan_lines(report, quiet=quiet))


def outcomes(report: ScanReport, planned: Sequence[Outcome], json_output: bool) -> None:
    """clean's plan before its question."""
    if for_people() or json_output:
        from . import table

        table.render_outcomes(question_console(json_output), report, planned)
    else:
        from . import plain

        echo_lines(plain.outcome_lines(report, planned))


def clean(report: CleanReport, json_output: bool, quiet: bool, asked: bool) -> None:
    if json_output:
        print_json(jsonout.dumps(jsonout.clean_json(report)))
        from .advice import blind_spots

        for note in blind_spots(report.scan):  # why it did not clean, for whoever reads the log
            say(note)
        return
    # The question came after the plan: do not print the plan a second time.
    if for_people():
        from . import table

        table.render_clean(out(), report, quiet=quiet, show_outcomes=not asked)
    else:
        from . import plain

        echo_lines(plain.clean_lines(report, quiet=quiet, show_outcomes=not asked))


class WaitReporter:
    """What `clean --wait` waits for: live on a terminal, a line every few seconds otherwise
    (both on stderr, so stdout stays the result)."""

    EVERY = 5.0

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.status: Any = None
        self.last = -math.inf

    def __call__(self, report: ScanReport, left: float) -> None:
        waiting = report.transient()
        names = ", ".join(f"{display_path(lock.path)} ({lock.verdict.value})" for lock in waiting)
        text = f"waiting up to {left:.0f}s more for {len(waiting)} lock(s): {names}"
        if self.live:
            if self.status is None:
                from rich.status import Status

                self.status = Status(text, console=err_console())
                self.status.start()
            self.status.update(text)
        elif time.monotonic() - self.last >= self.EVERY:
            self.last = time.monotonic()
            say(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


def watch_event(event: WatchEvent, json_output: bool) -> None:
    if json_output:
        echo_lines([jsonout.event_line(event)])
        return
    from .plain import logfmt

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(event.time))
    echo_lines([f"{stamp} " + logfmt(
        (("event", event.event), ("path", display_path(event.path)),
         ("verdict", event.verdict or "-"), ("reason", display_path(event.reason)))
    )])  # fmt: skip


def check(results: list[JournalHealth], json_output: bool, quiet: bool) -> None:
    if json_output:
        print_json(jsonout.dumps(jsonout.check_json(results)))
    elif for_people():
        from .journal import render_health

        for health in results:
            render_health(out(), health, quiet=quiet)
    else:
        from . import plain

        echo_lines([line for health in results for line in plain.health_lines(health, quiet=quiet)])


def repair_plan(report: RepairReport, json_output: bool) -> None:
    """repair's plan before its question."""
    from .journal import render_repair

    render_repair(question_console(json_output), report)


def repair(reports: list[RepairReport], json_output: bool) -> None:
    if json_output:
        print_json(jsonout.dumps(jsonout.repair_json(reports)))
        return
    from .journal import render_repair

    for report in reports:
        render_repair(out(), report)


def trials_plan(report: TrialsReport, json_output: bool) -> None:
    """trials' list before its question."""
    from .journal import render_trials

    render_trials(question_console(json_output), report)


def trials(report: TrialsReport, json_output: bool) -> None:
    if json_output:
        print_json(jsonout.dumps(jsonout.trials_json(report)))
    elif for_people():
        from .journal import render_trials

        render_trials(out(), report)
    else:
        from . import plain

        echo_lines(plain.trials_lines(report))


def migrate_lines(report: MigrateReport) -> list[str]:
    lines = []
    verb = "Copied" if report.performed else "Would copy"
    for copy in report.studies:
        states = ", ".join(f"{n} {s}" for s, n in sorted(copy.trials_by_state.items())) or "none"
        lines.append(f"{verb} study {copy.name!r}: {sum(copy.trials_by_state.values())}"
                     f" trial(s) ({states})")  # fmt: skip
    if report.discarded_trials:
        lines.append(f"{report.discarded_trials} discarded trial(s) (op 10) are copied as Optuna"
                     " reads them, in their state: a database has no discard.")  # fmt: skip
    if report.performed:
        if report.difference is None:
            lines.append(f"Verified: both sides load and every trial matches"
                         f" ({report.elapsed_seconds:.1f} s).")  # fmt: skip
            lines.append(f"In the training script: {report.storage_line}")
        else:
            lines.append(f"NOT verified: {report.difference}")
    return [display_path(line) for line in lines]


def migrate_plan(report: MigrateReport, json_output: bool) -> None:
    """migrate's plan before its question: on stderr under --json."""
    if not json_output:
        echo_lines(migrate_lines(report))
        return
    from rich.text import Text

    for line in migrate_lines(report):
        err_console().print(Text(line))


def migrate(report: MigrateReport, json_output: bool) -> None:
    if json_output:
        print_json(jsonout.dumps(jsonout.migrate_json(report)))
    else:
        echo_lines(migrate_lines(report))


@contextmanager
def copy_progress() -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr, on a terminal only; gone when the copy ends, however it ends."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err_console(), transient=True) as bar:
        task = bar.add_task("copying trials", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def demo(steps: Iterator[DemoStep], started: float) -> None:
    from rich.text import Text

    from . import table

    for step in steps:
        out().rule(Text(step.title))
        if step.detail:
            out().print(Text(display_path(step.detail)))
        if step.scan is not None:
            table.render_scan(out(), step.scan, steps=False)  # the next step is the demo's
        if step.clean is not None:
            table.render_clean(out(), step.clean)
    out().rule(Text("Done"))
    out().print(Text(f"Demo finished in {time.monotonic() - started:.1f} s; nothing left behind."))
