"""Human output: Rich tables and a summary that names the next command to run.

Every file name goes through `display_path` and into a `Text` (never markup), so a name holding
`[bold]` prints literally and an ANSI escape never reaches the terminal.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterable

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
        Text(lock.verdict.value, style=VERDICT_STYLE[lock.verdict]),
        Text(lock.judgement.reason),
    ]


def _leftover_row(leftover: LeftoverReport) -> list[Text]:
    return [
        _path_text(leftover.path, leftover.root),
        Text("leftover"),
        Text(human_age(leftover.age_seconds)),
        Text("-"),
        Text(leftover.verdict.value, style=VERDICT_STYLE[leftover.verdict]),
        Text(leftover.judgement.reason),
    ]


def _artifact_table(report: ScanReport) -> Table:
    table = Table(show_lines=False, expand=False)
    for header in ("path", "kind", "age", "holder", "verdict"):
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
