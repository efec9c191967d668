"""Human output of `scan` and `clean` in a terminal: Rich tables that read well at 80 columns.

One row per artifact: the lock's path (broken only after a "/"), kind, age, holder and verdict,
and its reason beneath them across the whole width. Every file name goes through
`display_path` and into a `Text` (never markup), so a name holding `[bold]` prints literally
and an ANSI escape never reaches the terminal. Pipes and log files get `plain` lines instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..model import CleanReport, Outcome, OutcomeKind, ScanReport, Verdict
from . import advice
from .fields import Fields, leftover_fields, lock_fields
from .text import display_path, relative_to_root, wrap_path

VERDICT_STYLE = {
    Verdict.ACTIVE.value: "green",
    Verdict.RECENT.value: "cyan",
    Verdict.STUCK.value: "bold magenta",
    Verdict.ORPHANED.value: "bold red",
    Verdict.UNKNOWN.value: "yellow",
}
OUTCOME_STYLE = {
    OutcomeKind.REMOVED.value: "bold green",
    OutcomeKind.WOULD_REMOVE.value: "red",
    OutcomeKind.KEPT.value: "dim",
    OutcomeKind.GONE.value: "dim",
    OutcomeKind.CONFLICT.value: "bold yellow",
    OutcomeKind.FAILED.value: "bold red",
}
_HOLDER_MAX = 22  # a long holder list wraps at its spaces
_MIN_LOCK_WIDTH = 24
_GAP = 2  # blanks between two columns


def _table(
    console: Console, headers: Sequence[str], rows: Sequence[tuple[str, str, Sequence[Text]]],
    title: str | None = None,
) -> Table:  # fmt: skip
    """`rows` are (path, reason, other cells). Each row is the path and its cells on a grid
    of fixed widths (the path gets what the others leave), with the reason beneath it across
    the whole width: a reason wrapped inside the first column took 37 lines for 4 locks."""
    widths = [len(h) for h in headers[1:]]
    for _, _, cells in rows:
        widths = [max(w, min(c.cell_len, _HOLDER_MAX)) for w, c in zip(widths, cells, strict=True)]
    lock_width = max(_MIN_LOCK_WIDTH, console.width - sum(widths) - _GAP * len(widths))
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  show_lines=True, pad_edge=False, padding=0, expand=False)  # fmt: skip
    table.add_column(_grid(lock_width, widths, [Text(h, style="bold") for h in headers]))
    for path, reason, cells in rows:
        line = _grid(lock_width, widths, [Text(wrap_path(path, lock_width)), *cells])
        table.add_row(Group(line, Text(reason, style="dim")))
    return table


def _grid(lock_width: int, widths: Sequence[int], cells: Sequence[Text]) -> Table:
    grid = Table.grid(padding=(0, _GAP, 0, 0), pad_edge=False)
    grid.add_column(min_width=lock_width, max_width=lock_width, overflow="fold")
    for width in widths:
        grid.add_column(min_width=width, max_width=width, overflow="fold")
    grid.add_row(*cells)
    return grid


def _lock_cells(fields: Fields) -> tuple[str, str, list[Text]]:
    return fields.path, fields.reason, [
        Text(fields.kind, style="yellow" if fields.kind in ("dangling", "unreadable") else ""),
        Text(fields.age),
        Text(fields.holder),
        Text(fields.verdict, style=VERDICT_STYLE.get(fields.verdict, "")),
    ]  # fmt: skip


def render_scan(console: Console, report: ScanReport, *, quiet: bool = False,
                steps: bool = True) -> None:  # fmt: skip
    """`steps=False`: without the next commands (the demo's, whose directory is gone after)."""
    fields = [*map(lock_fields, report.locks), *map(leftover_fields, report.leftovers)]
    if fields and not quiet:
        rows = [_lock_cells(f) for f in fields]
        console.print(_table(console, ("lock", "kind", "age", "holder", "verdict"), rows))
    elif not quiet:
        console.print(Text(f"No Optuna journal locks found in: {advice.quoted(report.roots)}"))
    if not quiet:
        for journal in report.journals:
            path = display_path(relative_to_root(journal.path, journal.root))
            console.print(Text(f"journal {path}: {journal.health.value}, {journal.prognosis.value}",
                               style="yellow"))  # fmt: skip
    console.print(Text(advice.counts(report), style="bold"))
    for step in advice.next_steps(report) if steps else ():
        console.print(Text(step))


def _outcome_cells(outcome: Outcome, root: str) -> tuple[str, str, list[Text]]:
    path = display_path(relative_to_root(outcome.path, root))
    return path, display_path(outcome.detail), [
        Text(outcome.verdict.value, style=VERDICT_STYLE[outcome.verdict.value]),
        Text(outcome.outcome.value, style=OUTCOME_STYLE[outcome.outcome.value]),
    ]  # fmt: skip


def _roots(report: ScanReport) -> dict[str, str]:
    roots = {lock.path: lock.observation.root for lock in report.locks}
    roots.update({leftover.path: leftover.root for leftover in report.leftovers})
    return roots


def render_outcomes(console: Console, report: ScanReport, outcomes: Sequence[Outcome]) -> None:
    """The plan (before), or the result (after): the same columns either way."""
    acted = any(o.outcome not in (OutcomeKind.WOULD_REMOVE, OutcomeKind.KEPT) for o in outcomes)
    title = "Result" if acted else "Plan (nothing was removed)"
    roots = _roots(report)
    rows = [_outcome_cells(o, roots.get(o.path, "")) for o in outcomes]
    console.print(_table(console, ("lock", "verdict", "outcome"), rows, title=title))


def render_clean(console: Console, report: CleanReport, *, quiet: bool = False,
                 show_outcomes: bool = True) -> None:  # fmt: skip
    """`show_outcomes=False`: the plan was shown before the question; only what was done."""
    if report.outcomes and show_outcomes and not quiet:
        render_outcomes(console, report.scan, report.outcomes)
    elif not quiet:
        roots = _roots(report.scan)
        for o in report.outcomes:
            if o.outcome not in (OutcomeKind.KEPT, OutcomeKind.WOULD_REMOVE):
                path = display_path(relative_to_root(o.path, roots.get(o.path, "")))
                console.print(Text(f"{o.outcome.value}: {path}",
                                   style=OUTCOME_STYLE[o.outcome.value]))  # fmt: skip
    console.print(Text(advice.clean_counts(report), style="bold"))
    for step in advice.clean_steps(report):
        console.print(Text(step))
