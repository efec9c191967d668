"""trials: the RUNNING and WAITING trials a crash left."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UsageError
from ..render import reports
from .options import Journal, JsonOption, LockChoice, LockOption, journal_or_fail
from .prompts import confirm, no_terminal

if TYPE_CHECKING:
    from ..actions.trials import TrialsReport
    from ..journal.replay import OpenTrial


class TrialsQuestion:
    """trials' one question, after the trials themselves."""

    def __init__(self, json_output: bool, retry: bool) -> None:
        self.json_output = json_output
        self.option = "--retry" if retry else "--fail"

    def __call__(self, report: TrialsReport, unproven: list[OpenTrial]) -> bool:
        numbers = ", ".join(str(t.number) for t in unproven)
        refusal = no_terminal(
            f"fail trial(s) {numbers} (no heartbeat proves them abandoned: a worker may still"
            " be running them)",
            "fail them",
            f"drop {self.option} to only list them",
        )
        return confirm(
            f"Fail {len(unproven)} trial(s) that no heartbeat proves abandoned? A worker may"
            " still be running them.",
            lambda: reports.trials_plan(report, self.json_output),
            refusal,
        )


def trials(
    journal: Journal,
    fail_running: Annotated[
        bool, typer.Option("--fail", help="Mark every RUNNING trial FAIL.")
    ] = False,
    retry: Annotated[
        bool,
        typer.Option(
            "--retry",
            help="Like --fail, and enqueue each one's parameters again (a trial killed before"
            " it had any parameters is only failed).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "-f",
            help="Without asking, also the trials no heartbeat proves abandoned (a worker may"
            " still be running them: be sure none is).",
        ),
    ] = False,
    lock: LockOption = LockChoice.symlink,
    json_output: JsonOption = False,
) -> int:
    """List trials a crash left RUNNING or WAITING; fail them, or fail and retry them.

    JournalStorage has no heartbeat, so a killed worker's trial stays RUNNING forever. A trial
    whose guarded worker's heartbeat proves it abandoned is failed on that proof. Any other
    RUNNING trial may still be running in a live worker (a plain worker keeps no file open while
    it evaluates), so failing it takes your word: in a terminal the trials and one question
    (default No); without one a refusal (exit 1, nothing written) unless --force. Writes wait
    for a live holder of the journal's lock and break a dead one's. The FAIL and the retried
    trial are written in the journal's own dialect (naive datetimes where its writers wrote
    naive ones), so Optuna 3.6 to the newest read them. Exit 1 while RUNNING trials remain.
    """
    from ..actions.trials import fail_trials, list_trials

    if fail_running and retry:
        raise UsageError("--fail and --retry are one choice: --retry fails the trials too")
    journal_or_fail(journal)
    if fail_running or retry:
        report = fail_trials(journal, retry=retry, force=force, lock_kind=lock.kind,
                             confirm=TrialsQuestion(json_output, retry))  # fmt: skip
    else:
        report = list_trials(journal)
    reports.trials(report, json_output)
    return int(report.needs_attention())
