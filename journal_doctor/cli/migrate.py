"""migrate: a journal's studies into a database."""

from __future__ import annotations

from typing import Annotated

import typer

from ..render import reports
from .options import DryRun, Force, Journal, JsonOption, journal_or_fail
from .prompts import confirm, no_terminal


def migrate(
    journal: Journal,
    url: Annotated[
        str,
        typer.Argument(
            help="Any RDB URL Optuna accepts (sqlite:///..., postgresql+psycopg://...,"
            " mysql+pymysql://...) or redis://HOST:PORT/DB (JournalRedisBackend).",
            metavar="URL",
            show_default=False,
        ),
    ],
    study: Annotated[
        list[str] | None,
        typer.Option("--study", metavar="NAME", help="Only this study (repeatable)."),
    ] = None,
    dry_run: DryRun = False,
    force: Force = False,
    json_output: JsonOption = False,
) -> int:
    """Copy a journal's studies to a database, then verify the copy trial by trial.

    Refused (exit 1, nothing created in the target) while the journal's lock is anything but
    orphaned or a process has it open, when the journal is damaged (run `repair` first), or when
    a study of the same name exists in the target. Copies directions, study attrs and every
    trial in order (state, including RUNNING and WAITING; params; values; intermediate values;
    attrs; times), loads both sides and compares them; prints the line to use in the training
    script. Asks before copying; --force skips the question. Exit 0 when verified, 1 naming
    the first difference. A copy cut short keeps what was committed and says how far it got
    and the `optuna delete-study` command that removes it before a second try.
    """
    from ..actions.migrate import migrate as migrate_core

    journal_or_fail(journal)
    if dry_run or not force:
        planned = migrate_core(journal, url, studies=study or (), dry_run=True)
        if dry_run:
            reports.migrate(planned, json_output)
            return 0
        refusal = no_terminal(f"migrate {journal}", "copy it")
        question = f"Copy {len(planned.studies)} study(ies) to {url}?"
        if not confirm(question, lambda: reports.migrate_plan(planned, json_output), refusal):
            return 1
    # Everything is checked again: the journal may have been taken while the question waited.
    with reports.copy_progress() as progress:
        report = migrate_core(journal, url, studies=study or (), progress=progress)
    reports.migrate(report, json_output)
    return 0 if report.verified else 1
