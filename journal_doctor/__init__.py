"""journal-doctor: heal Optuna file journals after crashes.

    import journal_doctor
    journal_doctor.clean(["runs/"], force=True, wait=60)   # before optuna.create_study(...)

The names below are loaded on first use, so that `journal-doctor scan` does not pay at start-up
for modules it does not run.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .cleaner import clean
    from .errors import DoctorError, UsageError
    from .model import (
        CleanReport,
        Holder,
        LeftoverReport,
        LockKind,
        LockReport,
        Outcome,
        OutcomeKind,
        ScanReport,
        Verdict,
    )
    from .scanner import scan

_WHERE = {
    "clean": "cleaner",
    "scan": "scanner",
    "DoctorError": "errors",
    "UsageError": "errors",
    **{
        name: "model"
        for name in (
            "CleanReport", "Holder", "LeftoverReport", "LockKind", "LockReport", "Outcome",
            "OutcomeKind", "ScanReport", "Verdict",
        )
    },
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'journal_doctor' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


__all__ = [
    "CleanReport",
    "DoctorError",
    "Holder",
    "LeftoverReport",
    "LockKind",
    "LockReport",
    "Outcome",
    "OutcomeKind",
    "ScanReport",
    "UsageError",
    "Verdict",
    "__version__",
    "clean",
    "scan",
]
