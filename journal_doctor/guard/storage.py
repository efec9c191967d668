"""`journal_doctor.storage()`: an Optuna JournalStorage whose lock names its holder, beats a
heartbeat, times out, and breaks a dead holder's lock in milliseconds; with Optuna's trial
heartbeat protocol, so `study.optimize` fails (and a retry callback re-runs) the RUNNING trials
of dead workers by itself.

Works with every Optuna from 3.6: the classes are built on first use from the installed
version's own (`journal.optuna_api`), and optuna is imported only then.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from functools import cache
from importlib import import_module
from typing import Any

from ..journal.optuna_api import file_backend_class, journal_storage_class
from ..model import LockKind
from .heartbeat import TrialHeartbeats, stale_trials
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
        TrialHeartbeats(journal, heartbeat_interval, grace_period),
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

    class GuardedJournalStorage(journal_storage_class(), BaseHeartbeat):  # type: ignore[misc]
        def __init__(
            self,
            backend: Any,
            heartbeats: TrialHeartbeats,
            callback: FailedTrialCallback | None,
        ) -> None:
            super().__init__(backend)
            self._heartbeats = heartbeats
            self._failed_trial_callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            self._heartbeats.beat(trial_id)

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            return stale_trials(self._heartbeats.directory[: -len(".heartbeats")],
                                [t._trial_id for t in running])  # fmt: skip

        def get_heartbeat_interval(self) -> int | None:
            # Optuna types it int; it only ever waits on it, and fractions work.
            return self._heartbeats.interval  # type: ignore[return-value]

        def get_heartbeat_stale_trial_callback(self) -> FailedTrialCallback | None:
            return self._failed_trial_callback

        def get_failed_trial_callback(self) -> FailedTrialCallback | None:  # Optuna < 5.0
            return self._failed_trial_callback

        def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
            trial_id: int = super().create_new_trial(study_id, template_trial)
            if template_trial is None or template_trial.state == TrialState.RUNNING:
                # Beat at once: a worker killed before its first HeartbeatThread beat must
                # not leave a RUNNING trial that no evidence will ever fail.
                self._heartbeats.beat(trial_id)
            return trial_id

        def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
            done: bool = super().set_trial_state_values(trial_id, state, values)
            if state == TrialState.RUNNING and done:
                self._heartbeats.beat(trial_id)  # a WAITING trial this worker now runs
            elif state.is_finished():
                self._heartbeats.forget(trial_id)
            return done

    return OptunaGuardedLock, GuardedBackend, GuardedJournalStorage
