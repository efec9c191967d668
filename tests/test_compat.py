"""Old Optuna versions read what the doctor wrote (the CI compatibility job).

The doctor runs here, with the newest Optuna; the workers, the resume and the final load run in
venvs of older versions, named by JD_COMPAT_PYTHONS (their pythons, separated by ":"). For each:
real workers of that version are SIGKILLed holding the lock, then `clean`, `check`, `repair`,
`trials --retry` and `trials --fail`; then that version resumes the study, loads it, builds
`trials_dataframe()`, and every trial the doctor failed has a duration (Optuna 5.0's aware
datetimes beside 3.6-4.4's naive ones would raise TypeError there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (
    Workers,
    doctor_json,
    kill_guarded_mid_trial,
    kill_mid_trial,
    require,
    run_doctor,
)

PYTHONS = [p for p in os.environ.get("JD_COMPAT_PYTHONS", "").split(":") if p]

LOAD = """
import json, sys, warnings
import optuna
warnings.simplefilter("ignore")
from journal_doctor.journal.optuna_api import file_backend_class, journal_storage_class
storage = journal_storage_class()(file_backend_class()(sys.argv[1]))
study = optuna.load_study(study_name="doctor-demo", storage=storage)
frame = study.trials_dataframe()
failed = [t for t in study.trials if t.state.name == "FAIL"]
print(json.dumps({
    "version": optuna.__version__,
    "rows": len(frame),
    "states": [t.state.name for t in study.trials],
    "failed_durations": [t.duration.total_seconds() for t in failed],
    "retry_of": [t.user_attrs.get("journal_doctor_retry_of") for t in study.trials],
}))
"""


def version_of(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import optuna; print(optuna.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("python", [sys.executable, *PYTHONS] if PYTHONS else [None])
def test_old_optuna_resumes_and_loads_what_the_doctor_wrote(
    tmp_path: Path, python: str | None
) -> None:
    if python is None:
        require("compat", "JD_COMPAT_PYTHONS names no venv of an older Optuna")
        return
    workers = Workers(python=python)
    journal = tmp_path / "j.log"
    try:
        kill_mid_trial(journal, workers)
        # A write cut short (what a kill mid-write, ENOSPC or a lost NFS client leaves).
        with open(journal, "ab") as f:
            f.write(b'{"op_code": 6, "worker_id": "w", "trial_id": 0, "sta')
        assert run_doctor("check", str(journal)).returncode == 1
        assert run_doctor("repair", "--force", str(journal)).returncode == 0
        code, retried = doctor_json("trials", "--retry", "--force", str(journal))
        assert code == 0, retried
        kill_mid_trial(journal, workers)  # crash again: this one is failed, not retried
        code, failed = doctor_json("trials", "--fail", "--force", str(journal))
        assert code == 0, failed
        actions = retried["actions"] + failed["actions"]
        assert actions
        resumed = subprocess.run(
            [python, "-m", "journal_doctor.demo.worker", str(journal), "--trials", "3"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    finally:
        workers.stop_all()
    loaded = subprocess.run(
        [python, "-c", LOAD, str(journal)], capture_output=True, text=True, check=False
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    seen = json.loads(loaded.stdout)
    assert seen["version"] == version_of(python)
    assert seen["rows"] == len(seen["states"])
    assert len(seen["failed_durations"]) >= len(actions)
    assert all(d >= 0 for d in seen["failed_durations"])
    assert "RUNNING" not in seen["states"]
    retried_numbers = [a["number"] for a in retried["actions"] if a["action"] == "failed+enqueued"]
    assert sorted(n for n in seen["retry_of"] if n is not None) == sorted(retried_numbers)


GUARDED_LOAD = """
import json, sys, warnings
import optuna
warnings.simplefilter("ignore")
import journal_doctor
study = optuna.load_study(study_name="doctor-demo", storage=journal_doctor.storage(sys.argv[1]))
print(json.dumps({
    "version": optuna.__version__,
    "states": [t.state.name for t in study.trials],
    "failed_trial": [t.system_attrs.get("failed_trial") for t in study.trials],
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("python", [sys.executable, *PYTHONS] if PYTHONS else [None])
def test_guarded_storage_on_every_optuna(tmp_path: Path, python: str | None) -> None:
    """Guarded and plain workers of that version share a journal; a guarded worker killed in
    a trial has it failed and retried by the next guarded worker of that version."""
    if python is None:
        require("compat", "JD_COMPAT_PYTHONS names no venv of an older Optuna")
        return
    journal = tmp_path / "j.log"
    plain, guarded = Workers(python=python), Workers(python=python, extra=("--guarded",))
    sleepy = Workers(python=python, extra=("--guarded", "--sleep", "0.3"))
    try:
        procs = [plain.start(journal, trials=15), guarded.start(journal, trials=15),
                 guarded.start(journal, "symlink", trials=15)]  # fmt: skip
        for proc in procs:
            assert proc.wait(timeout=300) == 0, proc.stderr.read().decode() if proc.stderr else ""
        kill_guarded_mid_trial(journal, sleepy)
        resumed = subprocess.run(
            [python, "-m", "journal_doctor.demo.worker", str(journal), "--trials", "3",
             "--guarded"], capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    finally:
        for workers in (plain, guarded, sleepy):
            workers.stop_all()
    assert run_doctor("check", str(journal)).returncode == 0
    loaded = subprocess.run(
        [python, "-c", GUARDED_LOAD, str(journal)], capture_output=True, text=True, check=False
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    seen = json.loads(loaded.stdout)
    assert seen["version"] == version_of(python)
    assert "RUNNING" not in seen["states"]
    failed = [n for n, state in enumerate(seen["states"]) if state == "FAIL"]
    assert len(failed) == 1  # the killed worker's trial, failed by its heartbeat
    assert seen["failed_trial"].count(failed[0]) == 1  # and retried once
