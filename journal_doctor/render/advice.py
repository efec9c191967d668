"""The words around the tables: counts, and the next command to run. Plain strings, no Rich,
so the terminal tables and the plain lines for pipes say exactly the same."""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..model import CleanReport, OutcomeKind, ScanReport, Verdict
from ..words import human_age
from .text import display_path

if TYPE_CHECKING:
    from ..actions.trials import TrialsReport
    from ..journal.replay import OpenTrial

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
    nothing = "nothing removed" if report.needs_attention() else "nothing to do"
    text = ", ".join(f"{n} {word}" for word, n in sorted(outcomes.items())) or nothing
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


def _transient_steps(report: ScanReport) -> list[str]:
    if not report.transient():
        return []
    limits = (report.thresholds.min_age, report.thresholds.shared_min_age)
    recent = any(lock.verdict is Verdict.RECENT for lock in report.transient())
    if recent and any(math.isinf(limit) for limit in limits):
        return ["Locks without a visible holder are never judged by age with an infinite"
                " --min-age/--shared-min-age: give a number of seconds to judge them."]  # fmt: skip
    return ["A write may be in flight: `clean --wait SECONDS` waits it out."]


def blind_spots(report: ScanReport) -> list[str]:
    """What the doctor could not see or decide, as scan and clean both say it."""
    steps = []
    if any(lock.verdict is Verdict.UNKNOWN for lock in report.locks):
        steps.append("Unknown locks are never removed: their reasons say what would decide them.")
    steps += [
        f"Could not read {display_path(problem.path)}: {problem.message}; nothing below it"
        " was checked."
        for problem in report.problems
    ]
    if report.container and report.locks:
        steps.append(CONTAINER_NOTE)
    return steps


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
    steps += _transient_steps(report)
    steps += _journal_steps(report)
    steps += blind_spots(report)
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
    steps += blind_spots(scan)
    if not report.needs_attention():
        steps.append(NOTHING_BLOCKS)
    return steps


def trial_age(trial: OpenTrial, now: float) -> str:
    started = trial.started_at
    return "-" if started is None else human_age(max(0.0, now - started))


def trial_note(trial: OpenTrial) -> str:
    if trial.discarded:
        return "discarded by its writer (op 10): not a crash's; never failed here"
    if trial.worker_id is None:
        return "enqueued: the next worker runs it"
    if trial.evidence:
        return f"abandoned ({trial.evidence})"
    return "abandoned: its worker moved on" if trial.abandoned else ""


def trial_actions(report: TrialsReport) -> list[str]:
    return [
        f"trial {a.trial.number} of {display_path(a.trial.study_name)}: {a.action.value}"
        f" ({display_path(a.detail)})"
        for a in report.actions
    ]


def trials_steps(report: TrialsReport) -> list[str]:
    """After the listing (and what was done): what is left, and the next command."""
    journal = display_path(report.journal)
    open_trials = report.health.open_trials
    if not open_trials:
        left = " left" if report.actions else ""
        return [f"{journal}: no RUNNING or WAITING trials{left}."]
    running = sum(t.crash_victim for t in open_trials)
    if not running:
        return []
    return [  # the command on a line of its own: copied whole, never wrapped
        f"{running} trial(s) RUNNING. If no worker runs them any more, this fails them and"
        " runs them again:",
        f"  journal-doctor trials --retry {shlex.quote(journal)}",
    ]
