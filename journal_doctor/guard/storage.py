"""`journal_doctor.storage()`: an Optuna JournalStorage whose lock names its holder, beats a
heartbeat, times out, and breaks a dead holder's lock in milliseconds; with Optuna's trial
heartbeat protocol, so `study.optimize` fails (and a retry callback re-runs) the RUNNING trials
of dead workers by itself.

Works with every Optuna from 3.6: the classes are built on first use from the installed
version's own (`journal.optuna_api`), and optuna is imported only then.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from collections.abc import Callable
from functools import cache
from importlib import import_module
from typing import Any

from ..journal.optuna_api import DialectMixin, file_backend_class, journal_storage_class
from ..model import LockKind
from .heartbeat import RunningTrials, TrialHeartbeats, prune, stale_trials, worker_key
from .lock import GRACE_PERIOD, HEARTBEAT_INTERVAL, GuardedLock

logger = logging.getLogger("journal_doctor")
FailedTrialCallback = Callable[[Any, Any], None]


def storage(
    path: str | os.PathLike[str],
    *,
    lock: str = "symlink",
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
    grace_period: float = GRACE_PERIOD,
    timeout: float | None = None,
    failed_trial_callback: FailedTrialCallback | None = None,
) -> Any:
    """A drop-in `optuna.storages.JournalStorage` for the journal at `path`.

    `lock`: "symlink" (Optuna's default kind) or "open" (an O_EXCL file, for NFS without
    symlinks and for Windows-like filesystems). `heartbeat_interval` (seconds) is how often a
    holder, and a worker running a trial, beats; `grace_period` how old a heartbeat on another
    host must be before its holder counts as dead (on this host, /proc decides at once).
    `timeout`: raise `journal_doctor.LockTimeout` after that many seconds without the lock
    (None: wait as long as a live holder holds it). `failed_trial_callback` runs for each trial
    failed because its worker died, e.g. `optuna.storages.RetryFailedTrialCallback()`.
    """
    kinds = {"symlink": LockKind.SYMLINK, "open": LockKind.FILE}
    if lock not in kinds:
        raise ValueError(f"lock={lock!r}: use 'symlink' or 'open'")
    if not 0 < heartbeat_interval < grace_period:
        raise ValueError(
            f"heartbeat_interval={heartbeat_interval} must be > 0 and below"
            f" grace_period={grace_period}: a holder must beat several times per grace period"
        )
    journal = os.fspath(path)
    lock_class, backend_class, storage_class = _classes()
    guard = lock_class(
        journal,
        kinds[lock],
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        timeout=timeout,
    )
    return storage_class(
        backend_class(journal, lock_obj=guard),
        journal,
        (heartbeat_interval, grace_period),
        failed_trial_callback,
    )


@cache
def _classes() -> tuple[Any, Any, Any]:
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    try:
        base_lock = import_module("optuna.storages.journal._file").BaseJournalFileLock
    except ImportError:  # Optuna < 4.0
        base_lock = import_module("optuna.storages._journal.file").JournalFileBaseLock

    class OptunaGuardedLock(GuardedLock, base_lock):  # type: ignore[misc, valid-type]
        """A GuardedLock that is also an instance of Optuna's lock base class."""

    class GuardedBackend(file_backend_class()):  # type: ignore[misc]
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            data = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            guard: GuardedLock = self._lock
            while True:
                guard.acquire()
                try:
                    # Fencing: never write under a lock that was broken meanwhile (a holder
                    # frozen past its grace period); take it again instead.
                    if guard.still_held():
                        with open(self._file_path, "ab") as f:
                            f.write(data.encode("utf-8"))
                            f.flush()
                            os.fsync(f.fileno())
                        return
                    logger.warning(
                        "%s was broken while this process held it (frozen past its grace"
                        " period?); taking it again before writing",
                        guard.path,
                    )
                finally:
                    guard.release()

    journal_storage: Any = journal_storage_class()

    class GuardedJournalStorage(DialectMixin, journal_storage, BaseHeartbeat):  # type: ignore[misc]
        def __init__(
            self,
            backend: Any,
            journal: str,
            timing: tuple[float, float],
            callback: FailedTrialCallback | None,
        ) -> None:
            super().__init__(backend)
            self._journal = journal
            me = worker_key(self._replay_result.worker_id)
            self._heartbeats = TrialHeartbeats(journal, me, *timing)
            self._heartbeats.beat()  # before any trial: a kill mid-CREATE_TRIAL is covered
            atexit.register(self._heartbeats.forget)
            self._running = RunningTrials(journal)
            self._failed_trial_callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            self._heartbeats.beat()

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

        def get_heartbeat_stale_trial_callback(self) -> FailedTrialCallback | None:
            return self._failed_trial_callback

        def get_failed_trial_callback(self) -> FailedTrialCallback | None:  # Optuna < 5.0
            return self._failed_trial_callback

        def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
            self._heartbeats.beat()  # fresh before the trial exists, whoever judges it
            trial_id: int = super().create_new_trial(study_id, template_trial)
            return trial_id

    return OptunaGuardedLock, GuardedBackend, GuardedJournalStorage
