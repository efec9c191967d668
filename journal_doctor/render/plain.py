"""Output for pipes and log files: one logfmt line per artifact with every field, no box
drawing, no width. `grep verdict=orphaned` works; so does any logfmt parser."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..model import CleanReport, Outcome, OutcomeKind, ScanReport
from . import advice
from .fields import Fields, leftover_fields, lock_fields
from .text import display_path, relative_to_root

if TYPE_CHECKING:
    from ..actions.trials import TrialsReport
    from ..journal.check import JournalHealth

Write = Callable[[str], None]


def _value(text: str) -> str:
    """Quoted when it has a space, a quote or "=". Backslashes are already escapes here
    (`display_path` writes a newline as `\\n` and a backslash as `\\\\`), so only quotes are."""
    if text and not any(c in text for c in ' "='):
        return text
    return '"' + text.replace('"', '\\"') + '"'


def logfmt(pairs: Iterable[tuple[str, str]]) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in pairs)


def _artifact_line(fields: Fields) -> str:
    return logfmt(
        (("path", fields.path), ("verdict", fields.verdict), ("kind", fields.kind),
         ("age", fields.age), ("holder", fields.holder), ("journal", fields.journal),
         ("fs", fields.filesystem), ("reason", fields.reason))
    )  # fmt: skip


def scan_lines(report: ScanReport, *, quiet: bool = False) -> list[str]:
    lines: list[str] = []
    if not quiet:
        lines += [_artifact_line(lock_fields(lock)) for lock in report.locks]
        lines += [_artifact_line(leftover_fields(left)) for left in report.leftovers]
        for journal in report.journals:
            path = display_path(relative_to_root(journal.path, journal.root))
            lines.append(logfmt((("journal", path), ("health", journal.health.value),
                                 ("prognosis", journal.prognosis.value))))  # fmt: skip
    lines.append(advice.counts(report))
    return lines + advice.next_steps(report)


def outcome_lines(report: ScanReport, outcomes: Iterable[Outcome]) -> list[str]:
    roots = {lock.path: lock.observation.root for lock in report.locks}
    roots.update({leftover.path: leftover.root for leftover in report.leftovers})
    return [
        logfmt((("path", display_path(relative_to_root(o.path, roots.get(o.path, "")))),
                ("verdict", o.verdict.value), ("outcome", o.outcome.value),
                ("detail", display_path(o.detail))))
        for o in outcomes
    ]  # fmt: skip


def clean_lines(report: CleanReport, *, quiet: bool = False, show_outcomes: bool = True
                ) -> list[str]:  # fmt: skip
    if quiet:
        lines: list[str] = []
    elif show_outcomes:
        lines = outcome_lines(report.scan, report.outcomes)
    else:  # the plan was shown before the question: only what was done
        done = (OutcomeKind.KEPT, OutcomeKind.WOULD_REMOVE)
        lines = outcome_lines(report.scan, [o for o in report.outcomes if o.outcome not in done])
    return [*lines, advice.clean_counts(report), *advice.clean_steps(report)]


def health_lines(health: JournalHealth, *, quiet: bool = False) -> list[str]:
    """`check` for pipes: one line per journal, then one per damaged line (nothing cut)."""
    path = display_path(health.path)
    pairs = [("journal", path), ("health", "healthy" if health.healthy else "damaged"),
             ("prognosis", health.prognosis.value)]  # fmt: skip
    if not quiet:
        states = ",".join(f"{state}:{n}" for state, n in health.trials_by_state.items() if n)
        pairs += [("bytes", str(health.size)), ("lines", str(health.lines)),
                  ("ops", str(health.ops)), ("studies", str(health.studies)),
                  ("trials", states or "none"), ("torn_tail_bytes", str(health.torn_tail_bytes)),
                  ("nul_bytes", str(health.nul_bytes))]  # fmt: skip
        if health.discarded_trials:
            pairs.append(("discarded_trials", str(health.discarded_trials)))
        if health.newer_ops:
            codes = ",".join(f"{code}:{n}" for code, n in health.newer_ops.items())
            pairs.append(("newer_ops", codes))
    lines = [logfmt([*pairs, ("summary", health.summary)])]
    if not quiet:
        lines += [
            logfmt((("journal", path), ("line", str(d.line)), ("byte", str(d.offset)),
                    ("problem", d.problem.value), ("detail", display_path(d.detail))))
            for d in health.damage
        ]  # fmt: skip
    return lines


def trials_lines(report: TrialsReport) -> list[str]:
    """`trials` for pipes: what was done, one line per open trial (the whole worker id), and
    the next step."""
    now = time.time()
    journal = display_path(report.journal)
    lines = advice.trial_actions(report)
    lines += [
        logfmt((("journal", journal), ("study", display_path(t.study_name)),
                ("number", str(t.number)), ("state", t.state), ("worker", t.worker_id or "-"),
                ("started", t.datetime_start or "-"), ("age", advice.trial_age(t, now)),
                ("note", advice.trial_note(t))))
        for t in report.health.open_trials
    ]  # fmt: skip
    return lines + advice.trials_steps(report)
