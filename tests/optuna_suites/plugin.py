"""A pytest plugin that runs Optuna's own storage suites (`tests/storages_tests/test_storages.py`
and `test_heartbeat.py`, taken from the installed version's source distribution) against
`journal_doctor.storage()`: their storage modes become one, `journal_doctor`, which supplies a
guarded storage on a temporary journal with the suite's own keyword arguments.

Loaded with `-p plugin` before the suite's modules import `optuna.testing.storages`, so the
lists they parametrize over are already ours. Excluded tests are listed with their reasons in
EXCLUDED (docs/guarded-storage.md prints the same list).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import optuna.testing.storages as supplied
import pytest
from optuna.testing.tempfile_pool import NamedTemporaryFilePool

import journal_doctor

MODE = "journal_doctor"

# Test name (without parameters) -> why it does not test journal_doctor.storage().
EXCLUDED = {
    "test_heartbeat_experimental_warnings": "RDBStorage's ExperimentalWarning for its"
    " heartbeat_interval argument (warning wording; the guarded storage's heartbeat is not"
    " experimental)",
    "test_fail_stale_trials": "written for RDBStorage only (sets its heartbeat attributes after"
    " construction)",
    "test_fail_stale_trials_with_race_condition": "RDBStorage only (a storage URL shared by two"
    " processes)",
    "test_get_stale_trial_ids": "RDBStorage only (sets its heartbeat attributes after"
    " construction)",
    "test_get_storage": "optuna.storages.get_storage() of RDB URLs",
    "test_get_trials_included_trial_ids": "RDBStorage's private _get_trials",
    "test_get_trials_trial_id_greater_than": "RDBStorage's private _get_trials",
}

# Optuna 3.6 keeps the retry callback in `optuna._callbacks`; the oldest shipped suite (4.1.0's,
# run for 3.6 and 4.0, whose sdists have no tests/) imports it from `optuna.storages._callbacks`.
try:
    importlib.import_module("optuna.storages._callbacks")
except ImportError:
    sys.modules["optuna.storages._callbacks"] = importlib.import_module("optuna._callbacks")

_enter = supplied.StorageSupplier.__enter__


def _supply(self: Any) -> Any:
    if self.storage_specifier != MODE:
        return _enter(self)
    options = dict(self.extra_args)
    self.tempfile = options.pop("file", None) or NamedTemporaryFilePool().tempfile()
    self.storage = journal_doctor.storage(self.tempfile.name, **options)
    return self.storage


supplied.StorageSupplier.__enter__ = _supply  # type: ignore[method-assign]
supplied.STORAGE_MODES[:] = [MODE]
supplied.STORAGE_MODES_HEARTBEAT[:] = [MODE]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        (drop if item.originalname in EXCLUDED else keep).append(item)  # type: ignore[attr-defined]
    items[:] = keep
    config.hook.pytest_deselected(items=drop)
