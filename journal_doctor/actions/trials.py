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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..errors import TrialsRefused, UnprovenTrials
from ..journal.check import JournalHealth, check_journal
from ..journal.optuna_api import is_aware
from ..journal.replay import OpenTrial
from ..journal.workers import rustuna_pid
from ..model import LockKind
from .in_use import lock_kind_of


class TrialAction(str, enum.Enum):
    """What `fail_trials` did with one trial (`TrialOutcome.action`)."""

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

    def needs_attention(self) -> bool:
        """True while a trial is left RUNNING (exit code 1); a discarded one is no crash's."""
        return any(t.crash_victim for t in self.health.open_trials)


def list_trials(journal: str | os.PathLike[str]) -> TrialsReport:
    """The trials a crash left RUNNING or WAITING, each with what the heartbeats prove of it
    (`OpenTrial.evidence`); nothing is written."""
    journal = os.fspath(journal)
    health = check_journal(journal, open_trials=True)
    return TrialsReport(journal, replace(health, open_trials=with_heartbeats(journal, health)))


def with_heartbeats(journal: str, health: JournalHealth) -> tuple[OpenTrial, ...]:
    """RUNNING trials that their heartbeats prove abandoned (the rule `study.optimize` applies
    through the guarded storage: `guard.heartbeat.judge_trials`), or whose Rustuna worker's
    process is provably gone (`rustuna_gone`), are marked so. Discarded trials are no crash's
    victims: never marked."""
    from ..guard.heartbeat import DEAD, judge_trials, worker_key

    running = {
        t.trial_id: (t.study_id, worker_key(t.worker_id))
        for t in health.open_trials
        if t.crash_victim and t.worker_id
    }
    judged = judge_trials(journal, running) if running else {}
    evidence = {tid: f"heartbeat: {j.why}" for tid, j in judged.items() if j.liveness in DEAD}
    unjudged = [t for t in health.open_trials if t.trial_id in running and t.trial_id not in judged]
    evidence.update(rustuna_gone(journal, unjudged))
    return tuple(
        replace(t, abandoned=True, evidence=evidence[t.trial_id]) if t.trial_id in evidence else t
        for t in health.open_trials
    )


def rustuna_gone(journal: str, trials: list[OpenTrial]) -> dict[int, str]:
    """Trial id -> why its Rustuna worker is gone, for the trials whose worker id names a pid
    that this host proves dead: the journal is on a local filesystem nobody else mounts, this
    host sees every process that could write it (no container, no hidepid), and that pid is
    free, or taken by a process that started after the trial did (reused). Anything less
    proves nothing (fail closed)."""
    pids = {t.trial_id: pid for t in trials if (pid := rustuna_pid(t.worker_id)) is not None}
    if not pids or not _sees_every_writer(journal):
        return {}
    gone: dict[int, str] = {}
    for trial in trials:
        pid = pids.get(trial.trial_id)
        why = _process_gone(pid, trial.started_at) if pid is not None else None
        if why is not None:
            gone[trial.trial_id] = f"Rustuna worker: {why}"
    return gone


def _sees_every_writer(journal: str) -> bool:
    from ..locks.visibility import Sight, other_pid_namespaces

    sight = Sight()
    directory = os.path.dirname(os.path.abspath(journal))
    try:
        filesystem = sight.filesystem(os.stat(directory).st_dev)
    except OSError:
        return False
    return not sight.unseen(directory, filesystem) and not other_pid_namespaces()


def _process_gone(pid: int, started: float | None) -> str | None:
    import psutil

    try:
        born = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return f"process {pid} is gone"
    except psutil.Error:
        return None
    if started is not None and born > started + 1:  # create_time is to 1/100 s
        return f"process {pid} is another one now (it started after the trial)"
    return None


Confirm = Callable[[TrialsReport, list[OpenTrial]], bool]


def fail_trials(
    journal: str | os.PathLike[str],
    *,
    retry: bool = False,
    force: bool = False,
    confirm: Confirm | None = None,
    lock_kind: LockKind = LockKind.SYMLINK,
) -> TrialsReport:
    """Mark every RUNNING trial FAIL (and, with retry, enqueue its parameters again).

    Trials whose heartbeat proves them abandoned are failed on that proof; the others only on
    the user's word: `force`, or `confirm(report, those trials)` answering True. Otherwise
    `UnprovenTrials` is raised and nothing is written. Refused while the journal is damaged.
    Written through the guarded storage with the journal's lock kind: it waits for a live
    holder (a worker mid-write) and breaks a dead one's lock; `LockTimeout` after 60 s.
    """
    journal = os.fspath(journal)
    report = list_trials(journal)
    if not report.health.healthy:
        raise TrialsRefused(
            f"{journal}: damaged ({report.health.summary}) Repair it first: journal-doctor repair",
            journal=journal,
        )
    running = [t for t in report.health.open_trials if t.crash_victim]
    unproven = [t for t in running if not t.evidence]
    if unproven and not force and not (confirm is not None and confirm(report, unproven)):
        raise UnprovenTrials(journal, tuple(t.number for t in unproven))
    if not running:
        return report
    with _guarded_storage(journal, lock_kind_of(journal, lock_kind)) as guarded:
        actions = _fail_all(guarded, running, retry)
    return TrialsReport(journal, check_journal(journal, open_trials=True), actions)


@contextlib.contextmanager
def _guarded_storage(journal: str, kind: LockKind = LockKind.SYMLINK) -> Iterator[Any]:
    """journal_doctor.storage() for the doctor's own writes, with the fleet's lock kind (a
    symlink lock and an open lock do not exclude each other). The doctor runs no trial: the
    heartbeat file its storage makes goes when the writes are done, not at exit (watch writes
    every pass and may run for weeks)."""
    from ..guard.storage import storage

    guarded = storage(journal, lock="open" if kind is LockKind.FILE else "symlink", timeout=60)
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
    proven = [t for t in health.open_trials if t.crash_victim and t.evidence]
    if not proven or not health.healthy:
        return ()
    with _guarded_storage(journal, lock_kind_of(journal, LockKind.SYMLINK)) as guarded:
        return _fail_all(guarded, proven, retry=False)
