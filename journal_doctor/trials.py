"""`trials`: the trials a crash left RUNNING (or WAITING), and failing or retrying them.

JournalStorage has no heartbeat, so `fail_stale_trials` does nothing for it and a trial whose
worker was killed stays RUNNING forever. Listing needs no optuna (the journal is read by
`integrity`); failing and retrying go through Optuna's own API (`study.tell`,
`study.enqueue_trial`), so the journal stays exactly what Optuna would have written.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .errors import DoctorError
from .holders import describe, users_of_journal
from .integrity import JournalHealth, OpenTrial, check_journal
from .model import LockKind


class TrialsRefused(DoctorError):
    pass


@dataclass(frozen=True)
class TrialAction:
    trial: OpenTrial
    action: str  # "failed", "failed+enqueued", "skipped"
    detail: str


@dataclass(frozen=True)
class TrialsReport:
    journal: str
    health: JournalHealth
    actions: tuple[TrialAction, ...] = ()


def list_trials(journal: str) -> TrialsReport:
    try:
        return TrialsReport(journal, check_journal(journal, open_trials=True))
    except FileNotFoundError:
        raise TrialsRefused(f"{journal}: no such journal") from None


def _lock_kind(journal: str, default: LockKind) -> LockKind:
    try:
        st = os.lstat(journal + ".lock")
    except FileNotFoundError:
        return default
    return LockKind.SYMLINK if stat.S_ISLNK(st.st_mode) else LockKind.FILE


def _refuse_while_locked(journal: str) -> None:
    """study.tell takes the journal's lock: on a stale lock it would wait out Optuna's 30 s
    grace period, and on a dangling symlink lock forever. Say so instead of hanging."""
    from .scanner import scan

    for lock in scan([journal]).locks:
        raise TrialsRefused(
            f"{lock.path}: the journal's lock is {lock.verdict.value} ({lock.judgement.reason})"
            f" Run `journal-doctor clean --force --wait 60 {os.path.dirname(journal) or '.'}`"
            " first; Optuna would wait on this lock."
        )


def fail_trials(
    journal: str,
    *,
    retry: bool = False,
    force: bool = False,
    lock_kind: LockKind = LockKind.SYMLINK,
) -> TrialsReport:
    """Mark every RUNNING trial FAIL (and, with retry, enqueue its parameters again).

    Refused while a live process has the journal open, unless `force`: that process may be the
    worker running one of these trials.
    """
    report = list_trials(journal)
    if not report.health.healthy:
        raise TrialsRefused(
            f"{journal}: damaged ({report.health.summary}) Repair it first: journal-doctor repair"
        )
    users, _ = users_of_journal(journal, os.stat(journal))
    if users and not force:
        raise TrialsRefused(
            f"{journal}: process {describe(users)} has it open and may be running these trials;"
            " stop it, or pass --force if you are sure it is not"
        )
    running = [t for t in report.health.open_trials if t.state == "RUNNING"]
    if not running:
        return report
    _refuse_while_locked(journal)

    import optuna
    from optuna.storages.journal import (
        JournalFileBackend,
        JournalFileOpenLock,
        JournalFileSymlinkLock,
        JournalStorage,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kind = _lock_kind(journal, lock_kind)
    lock: JournalFileOpenLock | JournalFileSymlinkLock
    if kind is LockKind.FILE:
        lock = JournalFileOpenLock(journal)
    else:
        lock = JournalFileSymlinkLock(journal)
    storage = JournalStorage(JournalFileBackend(journal, lock_obj=lock))
    actions: list[TrialAction] = []
    studies: dict[str, optuna.Study] = {}
    for trial in running:
        study = studies.get(trial.study_name)
        if study is None:
            study = optuna.load_study(study_name=trial.study_name, storage=storage)
            studies[trial.study_name] = study
        frozen = study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        if frozen.state != optuna.trial.TrialState.FAIL:
            actions.append(TrialAction(trial, "skipped", f"already {frozen.state.name}"))
            continue
        if retry:
            study.enqueue_trial(frozen.params, user_attrs={"journal_doctor_retry_of": trial.number})
            actions.append(
                TrialAction(trial, "failed+enqueued", f"params {frozen.params} enqueued again")
            )
        else:
            actions.append(TrialAction(trial, "failed", "marked FAIL"))
    return TrialsReport(journal, check_journal(journal, open_trials=True), tuple(actions))
