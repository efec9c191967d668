"""journal-doctor: heal Optuna file journals after crashes.

    import journal_doctor
    journal_doctor.clean("runs/", force=True, wait=60)   # before optuna.create_study(...)

The names below are loaded on first use, so that `journal-doctor scan` does not pay at start-up
for modules it does not run. `dir(journal_doctor)` lists them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .actions.repair import RepairReport, repair
    from .actions.trials import TrialsReport, fail_trials, list_trials
    from .errors import DoctorError, LockLost, LockTimeout, NotAJournal, Refused, UsageError
    from .guard.storage import storage
    from .journal.check import JournalHealth, check_journal
    from .locks.clean import clean
    from .locks.scan import scan
    from .model import (
        CleanReport,
        Holder,
        JournalReport,
        LeftoverReport,
        LockKind,
        LockReport,
        Outcome,
        OutcomeKind,
        Prognosis,
        ScanReport,
        TailHealth,
        Verdict,
    )

_WHERE = {
    "clean": "locks.clean",
    "scan": "locks.scan",
    "check_journal": "journal.check",
    "JournalHealth": "journal.check",
    "repair": "actions.repair",
    "RepairReport": "actions.repair",
    "list_trials": "actions.trials",
    "fail_trials": "actions.trials",
    "TrialsReport": "actions.trials",
    "storage": "guard.storage",
    **{
        name: "errors"
        for name in ("DoctorError", "LockLost", "LockTimeout", "NotAJournal", "Refused",
                     "UsageError")
    },
    **{
        name: "model"
        for name in (
            "CleanReport", "Holder", "JournalReport", "LeftoverReport", "LockKind", "LockReport",
            "Outcome", "OutcomeKind", "Prognosis", "ScanReport", "TailHealth", "Verdict",
        )
    },
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'journal_doctor' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


# Kept literal for linters; a test checks it lists exactly the lazy names.
__all__ = [
    "CleanReport",
    "DoctorError",
    "Holder",
    "JournalHealth",
    "JournalReport",
    "LeftoverReport",
    "LockKind",
    "LockLost",
    "LockReport",
    "LockTimeout",
    "NotAJournal",
    "Outcome",
    "OutcomeKind",
    "Prognosis",
    "Refused",
    "RepairReport",
    "ScanReport",
    "TailHealth",
    "TrialsReport",
    "UsageError",
    "Verdict",
    "__version__",
    "check_journal",
    "clean",
    "fail_trials",
    "list_trials",
    "repair",
    "scan",
    "storage",
]


def __dir__() -> list[str]:
    return __all__
