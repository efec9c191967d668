"""Human output: Rich tables and a summary that names the next command to run.

Every file name goes through `display_path` and into a `Text` (never markup), so a name holding
`[bold]` prints literally and an ANSI escape never reaches the terminal.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..judge import human_age
from ..model import (
    CleanReport,
    Holder,
    LeftoverReport,
    LockReport,
    Outcome,
    OutcomeKind,
    ScanReport,
    Verdict,
)
from .text import display_path, relative_to_root

if TYPE_CHECKING:
    from ..integrity import JournalHealth
    from ..repair import RepairReport
    from ..trials import TrialsReport

VERDICT_STYLE = {
    Verdict.ACTIVE: "green",
    Verdict.RECENT: "cyan",
    Verdict.STUCK: "bold magenta",
    Verdict.ORPHANED: "bold red",
    Verdict.UNKNOWN: "yellow",
}
OUTCOME_STYLE = {
    OutcomeKind.REMOVED: "bold green",
    OutcomeKind.WOULD_REMOVE: "red",
    OutcomeKind.KEPT: "dim",
    OutcomeKind.CONFLICT: "bold yellow",
    OutcomeKind.FAILED: "bold red",
}


def _holder_text(holders: tuple[Holder, ...], readers: tuple[Holder, ...]) -> Text:
    parts = [f"{h.pid} {h.name} ({h.status})" for h in holders]
    if readers:
        parts.append(f"{len(readers)} reader(s)")
    return Text(display_path("; ".join(parts)) if parts else "-")


def _path_text(path: str, root: str) -> Text:
    return Text(display_path(relative_to_root(path, root)))


def _lock_row(lock: LockReport) -> list[Text]:
    obs = lock.observation
    kind = obs.identity.kind.value + (" (dangling)" if obs.dangling else "")
    if obs.filesystem.network:
        kind += f" [{obs.filesystem.type}]"
    return [
        _path_text(obs.path, obs.root),
        Text(kind),
        Text(human_age(obs.age_seconds)),
        _holder_text(lock.holders, lock.readers),
        Text(obs.journal_state.health, style="" if obs.journal_state.health == "ok" else "yellow"),
        Text(lock.verdict.value, style=VERDICT_STYLE[lock.verdict]),
        Text(lock.judgement.reason),
    ]


def _leftover_row(leftover: LeftoverReport) -> list[Text]:
    return [
        _path_text(leftover.path, leftover.root),
        Text("leftover"),
        Text(human_age(leftover.age_seconds)),
        Text("-"),
        Text("-"),
        Text(leftover.verdict.value, style=VERDICT_STYLE[leftover.verdict]),
        Text(leftover.judgement.reason),
    ]


def _artifact_table(report: ScanReport) -> Table:
    table = Table(show_lines=False, expand=False)
    for header in ("path", "kind", "age", "holder", "journal", "verdict"):
        table.add_column(header, overflow="fold")
    table.add_column("reason", overflow="fold", ratio=1)
    for lock in report.locks:
        table.add_row(*_lock_row(lock))
    for leftover in report.leftovers:
        table.add_row(*_leftover_row(leftover))
    return table


def _counts(report: ScanReport) -> str:
    counts = Counter(lock.verdict.value for lock in report.locks)
    parts = [f"{n} {word}" for word, n in sorted(counts.items())]
    lock_part = f"{len(report.locks)} lock(s)" + (f": {', '.join(parts)}" if parts else "")
    return f"{lock_part}; {len(report.leftovers)} leftover(s)"


def _quoted(paths: Iterable[str]) -> str:
    return " ".join(shlex.quote(display_path(p)) for p in paths)


def next_steps(report: ScanReport) -> list[str]:
    """What to do next, one sentence each, most urgent first."""
    steps: list[str] = []
    stuck = [lock for lock in report.locks if lock.verdict is Verdict.STUCK]
    for lock in stuck:
        pid = lock.holders[0].pid
        steps.append(
            f"Continue the stopped holder with `kill -CONT {pid}` or end it with `kill {pid}`."
        )
    removable = sum(lock.verdict is Verdict.ORPHANED for lock in report.locks) + sum(
        leftover.verdict is Verdict.ORPHANED for leftover in report.leftovers
    )
    if removable:
        steps.append(
            f"Run `journal-doctor clean {_quoted(report.roots)}` to remove {removable} orphaned"
            " artifact(s)."
        )
    if any(lock.verdict is Verdict.UNKNOWN for lock in report.locks):
        steps.append("Unknown locks are never removed: their reasons say what would decide them.")
    if report.transient():
        steps.append("A write may be in flight: `clean --wait SECONDS` waits it out.")
    damaged = sorted(
        {
            lock.journal
            for lock in (r.observation for r in report.locks)
            if lock.journal_state.health in ("torn-tail", "nul-tail", "bad-tail")
        }
    )
    if damaged:
        steps.append(
            f"Damaged journal tail: run `journal-doctor check {_quoted(damaged)}` (then `repair`)."
        )
    for problem in report.problems:
        steps.append(
            f"Could not read {display_path(problem.path)}: {problem.message}; locks below it were"
            " not checked."
        )
    if not steps:
        steps.append("Nothing blocks a resume.")
    return steps


def render_scan(console: Console, report: ScanReport, *, quiet: bool = False) -> None:
    if report.locks or report.leftovers:
        if not quiet:
            console.print(_artifact_table(report))
    elif not quiet:
        console.print(Text(f"No Optuna journal locks found in: {_quoted(report.roots)}"))
    if not quiet:
        console.print(Text(_counts(report), style="bold"))
    for step in next_steps(report):
        if quiet and step == "Nothing blocks a resume.":
            continue
        console.print(Text(step))


def _outcome_row(outcome: Outcome, root: str) -> list[Text]:
    return [
        _path_text(outcome.path, root),
        Text(outcome.verdict.value, style=VERDICT_STYLE[outcome.verdict]),
        Text(outcome.kind.value, style=OUTCOME_STYLE[outcome.kind]),
        Text(outcome.detail),
    ]


def render_plan(console: Console, report: ScanReport, outcomes: tuple[Outcome, ...]) -> None:
    """What clean will remove and what it keeps, each with its reason."""
    roots = {lock.path: lock.observation.root for lock in report.locks}
    roots.update({leftover.path: leftover.root for leftover in report.leftovers})
    table = Table(title="Plan", title_justify="left")
    for header in ("path", "verdict", "action"):
        table.add_column(header, overflow="fold")
    table.add_column("why", overflow="fold", ratio=1)
    for outcome in outcomes:
        table.add_row(*_outcome_row(outcome, roots.get(outcome.path, "")))
    console.print(table)


def render_clean(console: Console, report: CleanReport, *, quiet: bool = False) -> None:
    roots = {lock.path: lock.observation.root for lock in report.scan.locks}
    roots.update({leftover.path: leftover.root for leftover in report.scan.leftovers})
    acted = any(o.kind not in (OutcomeKind.WOULD_REMOVE, OutcomeKind.KEPT) for o in report.outcomes)
    if report.outcomes and not quiet:
        title = "Result" if acted else "Plan (nothing was removed)"
        table = Table(title=title, title_justify="left")
        for header in ("path", "verdict", "outcome"):
            table.add_column(header, overflow="fold")
        table.add_column("detail", overflow="fold", ratio=1)
        for outcome in report.outcomes:
            table.add_row(*_outcome_row(outcome, roots.get(outcome.path, "")))
        console.print(table)
    counts = Counter(o.kind.value for o in report.outcomes)
    summary = ", ".join(f"{n} {word}" for word, n in sorted(counts.items())) or "nothing to do"
    if report.waited_seconds:
        summary += f" (waited {report.waited_seconds:.1f}s"
        summary += ", timed out)" if report.wait_timed_out else ")"
    console.print(Text(summary, style="bold"))
    for lock in report.scan.locks:
        if lock.verdict is Verdict.STUCK:
            pid = lock.holders[0].pid
            console.print(
                Text(f"Still blocked by stopped process {pid}: `kill -CONT {pid}` or `kill {pid}`.")
            )
    if report.wait_timed_out:
        for lock in report.scan.transient():
            console.print(
                Text(
                    f"Still {lock.verdict.value} after waiting:"
                    f" {display_path(lock.path)}: {lock.judgement.reason}"
                )
            )


def _health_style(healthy: bool) -> str:
    return "green" if healthy else "bold red"


def render_health(console: Console, health: JournalHealth, *, quiet: bool = False) -> None:
    word = "healthy" if health.healthy else "damaged"
    console.print(
        Text.assemble(
            (display_path(health.path), "bold"), ": ", (word, _health_style(health.healthy))
        )
    )
    if not quiet:
        states = ", ".join(f"{n} {s}" for s, n in health.trials_by_state.items() if n)
        console.print(
            Text(
                f"  {health.size:,} bytes, {health.lines:,} lines, {health.ops:,} ops,"
                f" {health.studies} study(ies), trials: {states or 'none'}"
            )
        )
        if health.torn_tail_bytes:
            console.print(
                Text(f"  torn tail: {health.torn_tail_bytes:,} bytes after the last newline")
            )
        if health.nul_runs:
            console.print(Text(f"  NUL bytes: {health.nul_bytes:,} in {health.nul_runs} run(s)"))
        if health.damage:
            table = Table(show_header=True, box=None, padding=(0, 2))
            for header in ("line", "byte", "problem", "detail"):
                table.add_column(header, overflow="fold")
            for d in health.damage:
                table.add_row(str(d.line), str(d.offset), d.problem.value, Text(d.detail))
            console.print(table)
            if health.damage_count > len(health.damage):
                console.print(Text(f"  ... {health.damage_count - len(health.damage)} more"))
        running = health.trials_by_state["RUNNING"]
        if running:
            console.print(
                Text(f"  {running} trial(s) still RUNNING: `journal-doctor trials` lists them")
            )
    console.print(Text("  " + health.summary))


def render_repair(console: Console, report: RepairReport) -> None:
    if report.before.healthy:
        console.print(Text(f"{display_path(report.journal)}: healthy, nothing to repair."))
        return
    title = "Repaired" if report.performed else "Repair plan (nothing changed)"
    console.print(Text(f"{title}: {display_path(report.journal)}", style="bold"))
    for fix in report.plan:
        console.print(Text(f"  - {fix.sentence}"))
    if report.before.damage_count > len(report.plan):
        console.print(Text(f"  ... and {report.before.damage_count - len(report.plan)} more lines"))
    if report.performed:
        assert report.backup is not None
        assert report.quarantine is not None
        console.print(Text(f"  backup: {display_path(report.backup)}"))
        console.print(Text(f"  quarantine: {display_path(report.quarantine)}"))
        console.print(Text(f"  {report.verified} ({report.elapsed_seconds:.2f} s)"))


def render_trials(console: Console, report: TrialsReport) -> None:
    open_trials = report.health.open_trials
    if not open_trials:
        console.print(Text(f"{display_path(report.journal)}: no RUNNING or WAITING trials."))
    else:
        now = time.time()
        table = Table(title=display_path(report.journal), title_justify="left")
        for header in ("study", "number", "state", "worker", "started", "age", "note"):
            table.add_column(header, overflow="fold")
        for t in open_trials:
            age = "-"
            if t.datetime_start:
                try:
                    started = datetime.fromisoformat(t.datetime_start).timestamp()
                    age = human_age(max(0.0, now - started))
                except ValueError:
                    pass
            note = "abandoned: its worker moved on" if t.abandoned else ""
            table.add_row(
                Text(display_path(t.study_name)),
                str(t.number),
                t.state,
                Text(t.worker_id),
                Text((t.datetime_start or "-")[:19]),
                age,
                note,
            )
        console.print(table)
    for action in report.actions:
        console.print(
            Text(
                f"trial {action.trial.number} of {display_path(action.trial.study_name)}:"
                f" {action.action} ({display_path(action.detail)})"
            )
        )
