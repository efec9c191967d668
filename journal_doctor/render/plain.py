"""Output for pipes and log files: one logfmt line per artifact with every field, no box
drawing, no width. `grep verdict=orphaned` works; so does any logfmt parser."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..model import CleanReport, Outcome, ScanReport
from . import advice
from .fields import Fields, leftover_fields, lock_fields
from .text import display_path, relative_to_root

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
    lines = [] if quiet or not show_outcomes else outcome_lines(report.scan, report.outcomes)
    return [*lines, advice.clean_counts(report), *advice.clean_steps(report)]
