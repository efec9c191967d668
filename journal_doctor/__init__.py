"""journal-doctor: heal Optuna file journals after crashes.

import journal_doctor
journal_doctor.clean(["runs/"], force=True, wait=60)   # before optuna.create_study(...)
"""

from __future__ import annotations

from ._version import __version__
from .clean import clean
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
from .scan import scan

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
