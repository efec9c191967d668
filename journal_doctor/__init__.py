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
    from .actions.repair import FixAction, PlannedFix, RepairReport, repair
    from .actions.trials import TrialAction, TrialOutcome, TrialsReport, fail_trials, list_trials
    from .errors import (
        DoctorError,
        JournalWriteFailed,
        LockLost,
        LockTimeout,
        NoJournal,
        NotAJournal,
        Refused,
        RepairRefused,
        TrialsRefused,
        UnprovenTrials,
        UsageError,
    )
    from .guard.storage import storage
    from .journal.check import Damage, JournalHealth, check_journal
    from .journal.ops import Problem
    from .journal.replay import OpenTrial
    from .locks.clean import clean
    from .locks.scan import scan
    from .model import (
        Blindness,
        CleanReport,
        Filesystem,
        Holder,
        Identity,
        JournalReport,
        JournalState,
        Judgement,
        LeftoverOrigin,
        LeftoverReport,
        LockKind,
        LockObservation,
        LockReport,
        Outcome,
        OutcomeKind,
        Prognosis,
        ScanProblem,
        ScanReport,
        TailHealth,
        Thresholds,
        Unseen,
        Verdict,
    )
    from .protocol.record import HolderRecord, Liveness, RecordJudgement

_WHERE = {
    **{name: "actions.repair" for name in (
        "FixAction", "PlannedFix", "RepairReport", "repair"
    )},
    **{name: "actions.trials" for name in (
        "TrialAction", "TrialOutcome", "TrialsReport", "fail_trials", "list_trials"
    )},
    **{name: "errors" for name in (
        "DoctorError", "JournalWriteFailed", "LockLost", "LockTimeout", "NoJournal",
        "NotAJournal", "Refused", "RepairRefused", "TrialsRefused", "UnprovenTrials", "UsageError"
    )},
    "storage": "guard.storage",
    **{name: "journal.check" for name in (
        "Damage", "JournalHealth", "check_journal"
    )},
    "Problem": "journal.ops",
    "OpenTrial": "journal.replay",
    "clean": "locks.clean",
    "scan": "locks.scan",
    **{name: "model" for name in (
        "Blindness", "CleanReport", "Filesystem", "Holder", "Identity", "JournalReport",
        "JournalState", "Judgement", "LeftoverOrigin", "LeftoverReport", "LockKind",
        "LockObservation", "LockReport", "Outcome", "OutcomeKind", "Prognosis", "ScanProblem",
        "ScanReport", "TailHealth", "Thresholds", "Unseen", "Verdict"
    )},
    **{name: "protocol.record" for name in (
        "HolderRecord", "Liveness", "RecordJudgement"
    )},
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'journal_doctor' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


# Kept literal for linters; a test checks it lists exactly the lazy names.
__all__ = [
    "Blindness",
    "CleanReport",
    "Damage",
    "DoctorError",
    "Filesystem",
    "FixAction",
    "Holder",
    "HolderRecord",
    "Identity",
    "JournalHealth",
    "JournalReport",
    "JournalState",
    "JournalWriteFailed",
    "Judgement",
    "LeftoverOrigin",
    "LeftoverReport",
    "Liveness",
    "LockKind",
    "LockLost",
    "LockObservation",
    "LockReport",
    "LockTimeout",
    "NoJournal",
    "NotAJournal",
    "OpenTrial",
    "Outcome",
    "OutcomeKind",
    "PlannedFix",
    "Problem",
    "Prognosis",
    "RecordJudgement",
    "Refused",
    "RepairRefused",
    "RepairReport",
    "ScanProblem",
    "ScanReport",
    "TailHealth",
    "Thresholds",
    "TrialAction",
    "TrialOutcome",
    "TrialsRefused",
    "TrialsReport",
    "UnprovenTrials",
    "Unseen",
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
