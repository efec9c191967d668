"""Human output of the journal commands: `check`, `repair`, `trials`.

Every file name goes through `display_path` and into a `Text` (never markup).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..journal.workers import rustuna_pid
from . import advice
from .text import display_path

if TYPE_CHECKING:
    from ..actions.repair import RepairReport
    from ..actions.trials import TrialsReport
    from ..journal.check import JournalHealth


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
        if health.discarded_trials:
            console.print(
                Text(f"  {health.discarded_trials} trial(s) discarded (op 10) by their writer")
            )
        if health.newer_ops:
            codes = ", ".join(f"{n} of op {code}" for code, n in health.newer_ops.items())
            console.print(Text(f"  ops this doctor does not know, kept: {codes}"))
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


def short_worker(worker_id: str | None) -> str:
    """`7204c1c2…-1407` (Optuna), `rustuna:8396` (Rustuna: its pid): enough to tell workers
    apart at 80 columns (JSON has the whole id)."""
    if worker_id is None:
        return "-"
    pid = rustuna_pid(worker_id)
    if pid is not None:
        return f"rustuna:{pid}"
    prefix, _, thread = worker_id.rpartition("-")
    return f"{prefix[:8]}…-{thread[-4:]}" if prefix else worker_id


def _started(datetime_start: str | None) -> str:
    """`2026-11-28 07:13`: to the minute, which fits 80 columns (JSON has the whole time)."""
    return (datetime_start or "-")[:16].replace("T", " ")


def render_trials(console: Console, report: TrialsReport) -> None:
    """What was done first, then what is still open, then the next step."""
    for line in advice.trial_actions(report):
        console.print(Text(line))
    if report.health.open_trials:
        now = time.time()
        table = Table(title=display_path(report.journal), title_justify="left",
                      box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)  # fmt: skip
        # Ids, times and numbers never break; the study name and the note wrap.
        for header in ("study", "number", "state", "worker", "started", "age", "note"):
            table.add_column(header, overflow="fold", no_wrap=header not in ("study", "note"))
        for t in report.health.open_trials:
            table.add_row(Text(display_path(t.study_name)), str(t.number), t.state,
                          Text(short_worker(t.worker_id)), Text(_started(t.datetime_start)),
                          advice.trial_age(t, now), advice.trial_note(t))  # fmt: skip
        console.print(table)
    for step in advice.trials_steps(report):
        console.print(Text(step))
