"""check and repair: a journal's health."""

from __future__ import annotations

from ..errors import Interrupted
from ..render import reports
from ..render.console import say
from ..render.text import display_path
from .exit_codes import exit_code
from .options import (
    DryRun,
    Force,
    Journals,
    JsonOption,
    LockChoice,
    LockOption,
    Quiet,
    journal_or_fail,
)
from .prompts import confirm, no_terminal


def check(journals: Journals, json_output: JsonOption = False, quiet: Quiet = False) -> int:
    """Read each journal as Optuna would and say what Optuna will do with it.

    Streams the file in bounded memory, without optuna: bytes, ops, studies, trials by state,
    torn tail, fused lines, NUL runs, undecodable lines and non-op lines (line number, byte
    offset, error). Anything but an Optuna journal (its first line an op) is refused (exit 2).
    -q prints only each journal's verdict and its sentence. Exit 0 when every journal is
    healthy, 1 when one is damaged.
    """
    from ..journal.check import check_journal

    for journal in journals:
        journal_or_fail(journal)
    results = [check_journal(journal, open_trials=True) for journal in journals]
    reports.check(results, json_output, quiet)
    return 0 if all(health.healthy for health in results) else 1


def repair(
    journals: Journals,
    dry_run: DryRun = False,
    force: Force = False,
    lock: LockOption = LockChoice.symlink,
    json_output: JsonOption = False,
) -> int:
    """Rewrite damaged journals so Optuna loads them again, keeping every good line.

    Refuses while the journal's lock is active, stuck, recent or unknown, or a live process has
    the journal open; refuses anything but an Optuna journal (exit 2). Holds the journal's lock
    meanwhile (workers started now wait), copies the original to JOURNAL.<UTC time>.bak, cuts a
    torn or NUL tail, salvages the op out of a fused line, moves undecodable and non-op lines to
    JOURNAL.quarantine, checks that Optuna loads the result, then renames it over the journal.
    Exit 0 when every journal is healthy afterwards.
    """
    from ..actions.repair import RepairReport
    from ..actions.repair import repair as repair_core

    for journal in journals:
        journal_or_fail(journal)

    def ask(report: RepairReport) -> bool:
        refusal = no_terminal(f"repair {report.journal}", "repair it")
        return confirm(f"Repair {display_path(report.journal)}?",
                       lambda: reports.repair_plan(report, json_output), refusal)  # fmt: skip

    done, code = [], 0
    for journal in journals:
        try:
            report = repair_core(
                journal, dry_run=dry_run, force=force, confirm=ask, lock_kind=lock.kind
            )
        except Interrupted:
            raise
        except Exception as error:  # one journal's failure: said, and the others go on
            failed, line = exit_code(error)
            if failed == 3:
                raise  # a bug ends the command, through the one error map
            if line is not None:
                say(line)
            code = max(code, failed)
            continue
        done.append(report)
        code = max(code, int(report.needs_attention()))
    reports.repair(done, json_output)
    return code
