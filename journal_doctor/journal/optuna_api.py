"""The one place that builds Optuna's journal objects, for every Optuna from 3.6 to the newest.

Optuna 4.0 moved `JournalFileStorage` to `journal.JournalFileBackend`; 4.3 gave the locks a
`grace_period`; 5.0 writes timezone-aware datetimes where 3.6-4.4 wrote naive ones. Callers
reach Optuna's journal classes only through here, and optuna is loaded only inside the functions
that need it (`scan` and `clean` never load this module).
"""

from __future__ import annotations

import inspect
from datetime import datetime, timezone
from typing import Any

from ..model import LockKind

DATETIME_KEYS = ("datetime_start", "datetime_complete")


def optuna_lock(journal: str, kind: LockKind, **options: Any) -> Any:
    """Optuna's own lock object of this kind, with those `options` (e.g. `grace_period`) the
    installed version knows."""
    try:
        from optuna.storages.journal import JournalFileOpenLock, JournalFileSymlinkLock
    except ImportError:  # Optuna < 4.0
        from optuna.storages import JournalFileOpenLock, JournalFileSymlinkLock

    cls = JournalFileOpenLock if kind is LockKind.FILE else JournalFileSymlinkLock
    known = inspect.signature(cls.__init__).parameters
    return cls(journal, **{key: value for key, value in options.items() if key in known})


def file_backend_class() -> Any:
    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # Optuna < 4.0
        from optuna.storages import JournalFileStorage as JournalFileBackend
    return JournalFileBackend


def base_lock_class() -> Any:
    """The base class of Optuna's journal file locks (`JournalFileBackend` checks for it)."""
    try:
        from optuna.storages.journal._file import BaseJournalFileLock
    except ImportError:  # Optuna < 4.0
        from optuna.storages._journal.file import (  # type: ignore[no-redef]
            JournalFileBaseLock as BaseJournalFileLock,
        )
    return BaseJournalFileLock


def update_finished_error() -> type[Exception]:
    """What a journal's replay raises when this worker's own op updates a finished trial (a
    trial failed by another worker meanwhile): Optuna 3.6 raises a plain RuntimeError."""
    try:
        from optuna.exceptions import UpdateFinishedTrialError
    except ImportError:  # Optuna < 4.0
        return RuntimeError
    return UpdateFinishedTrialError


def journal_storage_class() -> Any:
    try:
        from optuna.storages.journal import JournalStorage
    except ImportError:  # Optuna < 4.0
        from optuna.storages import JournalStorage
    return JournalStorage


def is_aware(iso: str | None) -> bool | None:
    """Was this datetime written timezone-aware (Optuna >= 5.0) or naive (3.6-4.4)?"""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).tzinfo is not None
    except ValueError:
        return None


def in_dialect(iso: str, aware: bool) -> str:
    """The same instant written the way the journal's writers write it. Naive times are local
    time, as `datetime.now()` gave them to Optuna <= 4.4."""
    moment = datetime.fromisoformat(iso)
    if aware:
        moment = moment.astimezone(timezone.utc)
    elif moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


class DialectMixin:
    """Put first in the bases of a JournalStorage: writes datetimes in the journal's dialect.

    Set `.aware` before each write: True for timezone-aware, False for naive, None to leave
    Optuna's own. Every op still goes through Optuna's `_write_log`, which every version from
    3.6 to 5.0 has, so the journal stays exactly what Optuna writes but for the datetimes.
    """

    aware: bool | None = None

    def _write_log(self, op_code: int, extra_fields: dict[str, Any]) -> None:
        if self.aware is not None:
            extra_fields = {
                key: in_dialect(value, self.aware)
                if key in DATETIME_KEYS and isinstance(value, str)
                else value
                for key, value in extra_fields.items()
            }
        super()._write_log(op_code, extra_fields)  # type: ignore[misc]
