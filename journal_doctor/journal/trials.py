"""`trials`: the trials a crash left RUNNING (or WAITING), and failing or retrying them.

JournalStorage has no heartbeat, so `fail_stale_trials` does nothing for it and a trial whose
worker was killed stays RUNNING forever. Listing needs no optuna (the journal is read by
`check`); failing and retrying go through Optuna's own API (`study.tell`,
`study.enqueue_trial`), with every datetime written in the journal's own dialect: Optuna 5.0
writes timezone-aware times, and 3.6-4.4 cannot subtract those from the naive ones their own
workers wrote (`FrozenTrial.duration`, `trials_dataframe()`).
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..errors import Refused
from ..model import LockKind
from .check import JournalHealth, check_journal
from .in_use import lock_kind_of, refuse_if_in_use
from .optuna_api import is_aware, storage_in_dialect
from .replay import OpenTrial


class TrialsRefused(Refused):
    pass


class TrialAction(str, enum.Enum):
    FAILED = "failed"
    RETRIED = "failed+enqueued"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class TrialOutcome:
    trial: OpenTrial
    action: TrialAction
    detail: str


@dataclass(frozen=True)
class TrialsReport:
    journal: str
    health: JournalHealth
    actions: tuple[TrialOutcome, ...] = ()


def list_trials(journal: str) -> TrialsReport:
    health = check_journal(journal, open_trials=True)
    return TrialsReport(journal, replace(health, open_trials=with_heartbeats(journal, health)))


def with_heartbeats(journal: str, health: JournalHealth) -> tuple[OpenTrial, ...]:
    """RUNNING trials that their heartbeats prove abandoned (the rule `study.optimize` applies
    through the guarded storage: `guard.heartbeat.judge_trials`) are marked so."""
    from ..guard.heartbeat import DEAD, judge_trials, worker_key

    running = {
        t.trial_id: (t.study_id, worker_key(t.worker_id))
        for t in health.open_trials
        if t.state == "RUNNING" and t.worker_id
    }
    judged = judge_trials(journal, running) if running else {}
    dead = {tid: j for tid, j in judged.items() if j.liveness in DEAD}
    return tuple(
        replace(t, abandoned=True, evidence=f"heartbeat: {dead[t.trial_id].why}")
        if t.trial_id in dead
        else t
        for t in health.open_trials
    )


def fail_trials(
    journal: str,
    *,
    retry: bool = False,
    ignore_open: bool = False,
    lock_kind: LockKind = LockKind.SYMLINK,
) -> TrialsReport:
    """Mark every RUNNING trial FAIL (and, with retry, enqueue its parameters again).

    Refused while the journal is damaged, has a lock, or a live process has it open (unless
    `ignore_open`: that process may be the worker running one of these trials).
    """
    report = list_trials(journal)
    if not report.health.healthy:
        raise TrialsRefused(
            f"{journal}: damaged ({report.health.summary}) Repair it first: journal-doctor repair"
        )
    running = [t for t in report.health.open_trials if t.state == "RUNNING"]
    targets, busy = _targets(journal, running, retry, ignore_open)
    if not targets:
        return report
    if busy:
        with _guarded_storage(journal) as guarded:
            actions = _fail_all(guarded, targets, retry)
    else:
        storage = storage_in_dialect(journal, lock_kind_of(journal, lock_kind))
        actions = _fail_all(storage, targets, retry)
    left = tuple(TrialOutcome(t, TrialAction.SKIPPED, busy) for t in busy_trials(report, targets))
    return TrialsReport(journal, check_journal(journal, open_trials=True), actions + left)


def busy_trials(report: TrialsReport, acted: list[OpenTrial]) -> list[OpenTrial]:
    done = {t.trial_id for t in acted}
    return [t for t in report.health.open_trials if t.state == "RUNNING" and t.trial_id not in done]


def _targets(
    journal: str, running: list[OpenTrial], retry: bool, ignore_open: bool
) -> tuple[list[OpenTrial], str]:
    """(trials to fail, why the others are left). While nothing uses the journal, every
    RUNNING trial; while workers run, only those whose worker a heartbeat proves dead (written
    through a guarded storage, which waits for live holders and breaks dead ones)."""
    action = "retry trials" if retry else "fail trials"
    try:
        refuse_if_in_use(
            journal, os.stat(journal), action, any_lock_refuses=True, ignore_open=ignore_open
        )
    except Refused as busy:
        proven = [t for t in running if t.evidence]
        if not proven:
            raise
        return proven, f"no heartbeat proves its worker dead, and the journal is in use: {busy}"
    return running, ""


@contextlib.contextmanager
def _guarded_storage(journal: str) -> Iterator[Any]:
    """journal_doctor.storage() for the doctor's own writes. The doctor runs no trial: the
    heartbeat file its storage makes goes when the writes are done, not at exit (watch writes
    every pass and may run for weeks)."""
    from ..guard.storage import storage

    guarded = storage(journal)
    try:
        yield guarded
    finally:
        guarded._heartbeats.forget()  # type: ignore[attr-defined]


def _fail_all(storage: Any, trials: list[OpenTrial], retry: bool) -> tuple[TrialOutcome, ...]:
    """Load each study once, then fail (or retry) its trials through `storage`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {
        name: optuna.load_study(study_name=name, storage=storage)
        for name in {t.study_name for t in trials}
    }
    return tuple(_fail_one(studies[t.study_name], storage, t, retry) for t in trials)


def _fail_one(study: Any, storage: Any, trial: OpenTrial, retry: bool) -> TrialOutcome:
    import optuna

    # The FAIL's datetime_complete in the dialect of the trial's own start, so that
    # `duration` (complete - start) works in the version that wrote the start.
    storage.aware = is_aware(trial.datetime_start)
    frozen = study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    if frozen.state != optuna.trial.TrialState.FAIL:
        return TrialOutcome(trial, TrialAction.SKIPPED, f"already {frozen.state.name}")
    if not retry:
        return TrialOutcome(trial, TrialAction.FAILED, "marked FAIL")
    if not frozen.params:
        return TrialOutcome(
            trial,
            TrialAction.FAILED,
            "marked FAIL; not retried: it was killed before it had any parameters, so there is"
            " nothing to run again (the study samples a new trial anyway)",
        )
    study.enqueue_trial(frozen.params, user_attrs={"journal_doctor_retry_of": trial.number})
    return TrialOutcome(trial, TrialAction.RETRIED, f"params {frozen.params} enqueued again")


def fail_proven(journal: str) -> tuple[TrialOutcome, ...]:
    """FAIL exactly the RUNNING trials whose guarded worker a heartbeat proves dead, while the
    fleet runs (for `watch --fail-stale-trials`); nothing without that proof."""
    health = list_trials(journal).health
    proven = [t for t in health.open_trials if t.state == "RUNNING" and t.evidence]
    if not proven or not health.healthy:
        return ()
    with _guarded_storage(journal) as guarded:
        return _fail_all(guarded, proven, retry=False)
