"""The words around the tables: counts, and the next command to run. Plain strings, no Rich,
so the terminal tables and the plain lines for pipes say exactly the same."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterable

from ..model import CleanReport, OutcomeKind, ScanReport, Verdict
from .text import display_path

NOTHING_BLOCKS = "Nothing blocks a resume."
CONTAINER_NOTE = (
    "Running in a container: processes outside it cannot be seen, so locks without a visible"
    " holder are judged by --shared-min-age."
)


def quoted(paths: Iterable[str]) -> str:
    return " ".join(shlex.quote(display_path(p)) for p in paths)


def counts(report: ScanReport) -> str:
    verdicts = Counter(lock.verdict.value for lock in report.locks)
    parts = [f"{n} {word}" for word, n in sorted(verdicts.items())]
    lock_part = f"{len(report.locks)} lock(s)" + (f": {', '.join(parts)}" if parts else "")
    text = f"{lock_part}; {len(report.leftovers)} leftover(s)"
    if report.journals:
        text += f"; {len(report.journals)} damaged journal(s)"
    return text


def clean_counts(report: CleanReport) -> str:
    outcomes = Counter(o.outcome.value for o in report.outcomes)
    text = ", ".join(f"{n} {word}" for word, n in sorted(outcomes.items())) or "nothing to do"
    if report.waited_seconds:
        text += f" (waited {report.waited_seconds:.1f}s"
        text += ", timed out)" if report.wait_timed_out else ")"
    return text


def _stuck_steps(report: ScanReport) -> list[str]:
    return [
        f"Continue the stopped holder with `kill -CONT {pid}` or end it with `kill {pid}`."
        for lock in report.locks
        if lock.verdict is Verdict.STUCK and (pid := lock.holders[0].pid)
    ]


def _journal_steps(report: ScanReport) -> list[str]:
    if not report.journals:
        return []
    paths = quoted(j.path for j in report.journals)
    return [f"Damaged journal(s): run `journal-doctor check {paths}`, then `repair`."]


def next_steps(report: ScanReport, removable_word: str = "clean") -> list[str]:
    """What to do next, one sentence each, most urgent first."""
    steps = _stuck_steps(report)
    removable = sum(lock.verdict is Verdict.ORPHANED for lock in report.locks)
    removable += sum(left.verdict is Verdict.ORPHANED for left in report.leftovers)
    if removable:
        steps.append(
            f"Run `journal-doctor {removable_word} {quoted(report.roots)}` to remove {removable}"
            " orphaned artifact(s)."
        )
    if any(lock.verdict is Verdict.UNKNOWN for lock in report.locks):
        steps.append("Unknown locks are never removed: their reasons say what would decide them.")
    if report.transient():
        steps.append("A write may be in flight: `clean --wait SECONDS` waits it out.")
    steps += _journal_steps(report)
    for problem in report.problems:
        steps.append(
            f"Could not read {display_path(problem.path)}: {problem.message}; nothing below it"
            " was checked."
        )
    if report.container and report.locks:
        steps.append(CONTAINER_NOTE)
    if not report.needs_attention() and not report.transient():
        steps.append(NOTHING_BLOCKS)
    return steps


def clean_steps(report: CleanReport) -> list[str]:
    """After a clean (or its plan): what still blocks, and what to do about it."""
    scan = report.scan
    steps: list[str] = []
    if any(o.outcome is OutcomeKind.WOULD_REMOVE for o in report.outcomes):
        steps.append(
            f"Run `journal-doctor clean --force {quoted(scan.roots)}` to remove what is marked"
            " would-remove."
        )
    steps += [
        f"Still blocked by stopped process {pid}: `kill -CONT {pid}` or `kill {pid}`."
        for lock in scan.locks
        if lock.verdict is Verdict.STUCK and (pid := lock.holders[0].pid)
    ]
    if report.wait_timed_out:
        steps += [
            f"Still {lock.verdict.value} after waiting: {display_path(lock.path)}"
            for lock in scan.transient()
        ]
    steps += _journal_steps(scan)
    if not report.needs_attention():
        steps.append(NOTHING_BLOCKS)
    return steps
