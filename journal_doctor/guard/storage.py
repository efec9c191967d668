"""`journal_doctor.storage()`: an Optuna JournalStorage whose lock names its holder, beats a
heartbeat, times out, and breaks a dead holder's lock in milliseconds; with Optuna's trial
heartbeat protocol, so `study.optimize` fails (and a retry callback re-runs) the RUNNING trials
of dead workers, and the trials a live process abandoned, by itself.

Works with every Optuna from 3.6: the installed version's classes come from
`journal.optuna_api`, the one place that knows where each version keeps them. This module
imports optuna: it is loaded only by `storage()` (and by unpickling a guarded storage), never
by `scan` or `clean`. Its classes live at module level, so a guarded storage pickles as
`JournalStorage` does: each process that unpickles one gets its own lock, worker id and
heartbeats.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from ..errors import LockLost
from ..journal.optuna_api import (
    DialectMixin,
    base_lock_class,
    file_backend_class,
    journal_storage_class,
    update_finished_error,
)
from ..model import LockKind
from .heartbeat import RunningTrials, TrialHeartbeats, keep_beating, prune, stale_trials, worker_key
from .lock import GRACE_PERIOD, HEARTBEAT_INTERVAL, GuardedLock

if TYPE_CHECKING:
    from optuna.storages import JournalStorage

logger = logging.getLogger("journal_doctor")
StaleTrialCallback = Callable[[Any, Any], None]
_KINDS = {"symlink": LockKind.SYMLINK, "open": LockKind.FILE}
_UPDATE_FINISHED = update_finished_error()


def storage(
    path: str | os.PathLike[str],
    *,
    lock: str = "symlink",
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
    grace_period: float = GRACE_PERIOD,
    timeout: float | None = None,
    failed_trial_callback: StaleTrialCallback | None = None,
    heartbeat_stale_trial_callback: StaleTrialCallback | None = None,
) -> JournalStorage:
    """A drop-in `optuna.storages.JournalStorage` for the journal at `path` (also an Optuna
    `BaseHeartbeat`, so `study.optimize` fails the trials of dead workers).

    `lock`: "symlink" (Optuna's default kind) or "open" (an O_EXCL file, for NFS without
    symlinks and for Windows-like filesystems). `heartbeat_interval` (seconds) is how often a
    holder, a worker and a running trial beat; `grace_period` how old a heartbeat must be before
    its holder, or its trial, counts as dead (on the holder's own host /proc decides at once).
    `timeout`: raise `journal_doctor.LockTimeout` after that many seconds without the lock
    (None: wait as long as a live holder holds it). `failed_trial_callback` (Optuna < 5.0's name)
    or `heartbeat_stale_trial_callback` (5.0's) runs for each trial failed as stale, e.g.
    `optuna.storages.RetryFailedTrialCallback()`.
    """
    if lock not in _KINDS:
        raise ValueError(f"lock={lock!r}: use 'symlink' or 'open'")
    if not 0 < heartbeat_interval < grace_period:
        raise ValueError(
            f"heartbeat_interval={heartbeat_interval} must be > 0 and below"
            f" grace_period={grace_period}: a holder must beat several times per grace period"
        )
    journal = os.fspath(path)
    guard = OptunaGuardedLock(
        journal,
        _KINDS[lock],
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        timeout=timeout,
    )
    callback = heartbeat_stale_trial_callback or failed_trial_callback
    return GuardedJournalStorage(GuardedBackend(journal, lock_obj=guard), journal, callback)


class OptunaGuardedLock(GuardedLock, base_lock_class()):  # type: ignore[misc]
    """A GuardedLock that is also an instance of Optuna's lock base class."""


class GuardedBackend(file_backend_class()):  # type: ignore[misc]
    """Optuna's file backend, appending through the guarded lock's fenced write."""

    _lock: GuardedLock
    _file_path: str

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        guard = self._lock
        while True:
            guard.acquire()
            try:
                if guard.append(self._file_path, data):
                    return
            finally:
                guard.release()
            logger.warning(
                "%s may have been broken while this process held it (silent past its grace"
                " period: frozen?); taking it again before writing",
                guard.path,
            )


class GuardedJournalStorage(DialectMixin, journal_storage_class(), BaseHeartbeat):  # type: ignore[misc]
    """JournalStorage with Optuna's trial-heartbeat protocol, the heartbeats kept outside the
    journal (`guard.heartbeat`)."""

    def __init__(self, backend: Any, journal: str, callback: StaleTrialCallback | None) -> None:
        super().__init__(backend)
        self._journal = journal
        self._stale_trial_callback = callback
        self._told: dict[int, tuple[Any, Any]] = {}  # see get_trial
        self._start_heartbeats()

    def _start_heartbeats(self) -> None:
        guard: GuardedLock = self._backend._lock
        me = worker_key(self._replay_result.worker_id)
        self._heartbeats = TrialHeartbeats(
            self._journal, me, guard.heartbeat_interval, guard.grace_period
        )
        self._heartbeats.beat()  # before any trial: a kill mid-CREATE_TRIAL is covered
        keep_beating(self._heartbeats)
        # At exit, or when the storage is collected: this worker runs nothing any more.
        weakref.finalize(self, self._heartbeats.forget)
        self._running = RunningTrials(self._journal)

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        del state["_heartbeats"], state["_running"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._start_heartbeats()  # a new process: its own worker id and heartbeats

    def record_heartbeat(self, trial_id: int) -> None:
        self._heartbeats.beat_trial(trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        running = self._running.update()
        stale = set(stale_trials(running, study_id, self._journal))
        prune(self._journal, running)
        # Only what Optuna itself sees RUNNING (the two replays agree; this makes sure).
        seen = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return sorted(t._trial_id for t in seen if t._trial_id in stale)

    def get_heartbeat_interval(self) -> int | None:
        # Optuna types it int; it only ever waits on it, and fractions work.
        return self._heartbeats.interval  # type: ignore[return-value]

    def get_heartbeat_stale_trial_callback(self) -> StaleTrialCallback | None:
        return self._stale_trial_callback

    def get_failed_trial_callback(self) -> StaleTrialCallback | None:  # Optuna < 5.0
        return self._stale_trial_callback

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        try:
            self._heartbeats.beat()  # fresh before the trial exists, whoever judges it
        except OSError:
            logger.exception("heartbeat %s failed; the beating thread retries",
                             self._heartbeats.path)  # fmt: skip
        trial_id: int = super().create_new_trial(study_id, template_trial)
        return trial_id

    def _write_log(self, op_code: int, extra_fields: dict[str, Any]) -> None:
        """Optuna's one write. After a failed one the view is read again from the journal, so
        that Optuna sees what the fleet left (a trial failed elsewhere while this host was cut
        off), not what this worker last believed."""
        self._told.clear()
        try:
            super()._write_log(op_code, extra_fields)
        except Exception:
            with contextlib.suppress(Exception):  # the write's error is the one to raise
                self._sync_with_backend()
            raise

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        if not state.is_finished():
            return bool(super().set_trial_state_values(trial_id, state, values))
        with self._heartbeats.finishing(trial_id):
            try:
                return bool(super().set_trial_state_values(trial_id, state, values))
            except LockLost as err:
                return self._finish_after(err, trial_id, state, values)
            except _UPDATE_FINISHED:
                raise  # a finished trial told again: Optuna's contract is this error
            except Exception:
                self._told[trial_id] = (state, values)
                raise

    def _finish_after(self, err: Exception, trial_id: int, state: Any, values: Any) -> bool:
        """A trial's end written while the lock was broken (this host cut off or frozen past
        the grace period): what the journal now says decides. Recorded, or failed by the fleet
        meanwhile (and retried elsewhere), this worker goes on; still RUNNING, it is written
        once more under a new hold."""
        trial = self.get_trial(trial_id)
        why = f"{type(err).__name__}: {err}"
        if trial.state == TrialState.RUNNING:
            logger.warning("%s; writing trial %d's end again", why, trial.number)
            try:
                return bool(super().set_trial_state_values(trial_id, state, values))
            except Exception:
                self._told[trial_id] = (state, values)
                raise
        if trial.state == state:
            logger.warning("%s; trial %d's end was recorded", why, trial.number)
        else:
            logger.warning(
                "%s; trial %d was %s in the journal already (another worker failed it while"
                " this one was silent, and a retry runs it again): this worker's %s is not"
                " recorded",
                why, trial.number, trial.state.name, state.name,
            )  # fmt: skip
        return True

    def get_trial(self, trial_id: int) -> Any:
        """The trial as the journal has it; except once, right after its end failed to be
        written (a full filesystem, an I/O error): then, until the next write, as this worker
        told it. Optuna asks at that moment only to log the trial's end, and a RUNNING trial
        there makes it raise its own `AssertionError: Should not reach.` instead of the
        write's error (`journal_doctor.JournalWriteFailed`), which names the cause."""
        trial = super().get_trial(trial_id)
        told = self._told.pop(trial_id, None)
        if told is None or trial.state != TrialState.RUNNING:
            return trial
        shown = copy.copy(trial)
        shown.state, shown.values = told
        return shown
