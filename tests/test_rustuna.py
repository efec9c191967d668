"""Rustuna workers (PyPI `rustuna`: Optuna's journal format and lock names, written in Rust)
beside the doctor and guarded Optuna workers: a Rustuna worker killed holding the lock, its
discarded trials (op 10) through every command that reads a journal, its worker ids, ops newer
than the doctor knows, and a fleet of both kinds on one journal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

import journal_doctor
from journal_doctor.journal.check import check_journal
from journal_doctor.locks.visibility import other_pid_namespaces

from helpers import PYTHON, doctor_json, line_count, need_root, poll, require, run_doctor

try:
    import rustuna
except ImportError:  # the test extra installs it; CI requires it
    rustuna = None

pytestmark = pytest.mark.slow
WORKER = Path(__file__).parent / "helpers" / "rustuna_worker.py"


@pytest.fixture(autouse=True)
def _rustuna_installed() -> None:
    if rustuna is None:
        require("rustuna", "rustuna is not installed (pip install rustuna: the test extra)")


def rustuna_worker(journal: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([PYTHON, str(WORKER), str(journal), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def kill_holding(journal: Path) -> None:
    """SIGKILL busy Rustuna workers until a kill leaves the lock behind."""
    lock = Path(f"{journal}.lock")
    for _ in range(200):
        before = line_count(journal)
        worker = rustuna_worker(journal, "100000", "0")
        assert poll(lambda: line_count(journal) > before + 20, 30)  # noqa: B023
        assert poll(lambda: os.path.lexists(lock), 5, interval=0.0002)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        if os.path.lexists(lock):
            return
    raise AssertionError("no kill left the lock behind")


def test_a_killed_rustuna_holder_s_lock_is_cleaned_and_a_rustuna_waiter_goes_on(
    tmp_path: Path,
) -> None:
    """Rustuna's waiters have no grace period: without the doctor this one waits forever."""
    journal = tmp_path / "j.log"
    kill_holding(journal)
    lines = line_count(journal)
    waiter = rustuna_worker(journal, "3", "0")
    time.sleep(2)  # long enough for a waiter that could go on to write something
    assert waiter.poll() is None
    assert line_count(journal) == lines  # waiting, silently
    code, report = doctor_json("clean", "--force", "--min-age", "1", str(tmp_path))
    assert code == 0, report
    assert report["removed"] == [f"{journal}.lock"], report
    assert waiter.wait(timeout=30) == 0
    assert first_line(waiter).startswith("done")


def discard_running_trial(journal: Path) -> int:
    """A study with two COMPLETE trials and a RUNNING one that Rustuna discards: its id."""
    storage = rustuna.storages.JournalFileStorage(str(journal))
    study = rustuna.create_study(study_name="doctor-demo", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=2)
    trial = study.ask()
    trial.suggest_float("x", -1, 1)
    storage.discard_trials([trial._trial_id])
    return int(trial._trial_id)


def test_check_counts_discarded_trials_and_says_who_reads_them(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    discard_running_trial(journal)
    assert b'"op_code":10' in journal.read_bytes()
    health = check_journal(str(journal))
    assert health.healthy
    assert health.discarded_trials == 1
    assert health.trials_by_state["RUNNING"] == 1  # as Optuna 5 lists it
    assert "Rustuna with apply_discard=True leaves them out" in health.summary
    code, report = doctor_json("check", str(journal))
    assert code == 0
    (checked,) = report["journals"]  # type: ignore[misc]
    assert checked["discarded_trials"] == 1
    assert "discarded_trials=1" in run_doctor("check", str(journal)).stdout
    # Optuna 5 reads it as the doctor says; Rustuna with apply_discard drops the trial.
    states = [t.state.name for t in load(journal).trials]
    assert states == ["COMPLETE", "COMPLETE", "RUNNING"]
    dropping = rustuna.storages.JournalFileStorage(str(journal), apply_discard=True)
    assert len(rustuna.load_study(study_name="doctor-demo", storage=dropping).trials) == 2


def load(journal: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name="doctor-demo", storage=storage)


def test_trials_never_offers_a_discarded_trial_as_a_crash_s_victim(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    discard_running_trial(journal)
    listed = run_doctor("trials", str(journal))
    assert listed.returncode == 0, listed.stdout  # nothing needs attention
    assert "discarded by its writer" in listed.stdout
    assert "journal-doctor trials --retry" not in listed.stdout
    _, report = doctor_json("trials", str(journal))
    (trial,) = report["open_trials"]  # type: ignore[misc]
    assert trial["discarded"] is True
    assert trial["worker_pid"] is not None  # a Rustuna id names its pid
    retried = run_doctor("trials", "--retry", "--force", str(journal))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert [t.state.name for t in load(journal).trials] == ["COMPLETE", "COMPLETE", "RUNNING"]


def test_repair_keeps_discards_and_newer_ops_and_check_calls_newer_ops_no_damage(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.log"
    discard_running_trial(journal)
    newer = b'{"op_code":11,"worker_id":"w-1","something":"new"}\n'
    with open(journal, "ab") as f:
        f.write(newer + b'{"op_code":6,"worker_id":"w-1","tri')  # a torn last line
    health = check_journal(str(journal))
    assert health.newer_ops == {11: 1}
    assert [d.problem.value for d in health.damage] == ["torn-tail"]  # the op 11 is no damage
    assert "op code this doctor does not know (11)" in health.summary
    repaired = run_doctor("repair", "--force", str(journal))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    data = journal.read_bytes()
    assert b'"op_code":10' in data
    assert newer in data
    assert check_journal(str(journal)).healthy


def test_migrate_copies_discarded_trials_as_optuna_reads_them_and_verifies(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    discard_running_trial(journal)
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    code, report = doctor_json("migrate", "--force", str(journal), url)
    assert code == 0, report
    assert report["verified"] is True
    assert report["discarded_trials"] == 1
    copied = optuna.load_study(study_name="doctor-demo", storage=url)
    assert [t.state.name for t in copied.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]


def test_migrate_refuses_a_journal_with_ops_it_cannot_read(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    discard_running_trial(journal)
    with open(journal, "ab") as f:
        f.write(b'{"op_code":11,"worker_id":"w-1"}\n')
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    result = run_doctor("migrate", "--force", str(journal), url)
    assert result.returncode == 1
    assert "op code 11" in result.stderr
    assert "nothing was copied" in result.stderr
    assert not (tmp_path / "db.sqlite3").exists()


def test_trials_proves_a_killed_rustuna_worker_gone_by_its_pid(tmp_path: Path) -> None:
    """Rustuna's worker ids carry its pid: on a local disk, where this host sees every process
    that can write the journal, a free pid proves the worker gone; a live one proves nothing."""
    if other_pid_namespaces():
        require("rustuna", "a container runs on this host: no pid proves a Rustuna worker gone")
    journal = tmp_path / "j.log"
    alive = rustuna_worker(journal, "1", "0", "--ask")
    try:
        assert first_line(alive).startswith("asked")
        _, report = doctor_json("trials", str(journal))
        (trial,) = report["open_trials"]  # type: ignore[misc]
        assert trial["worker_pid"] == alive.pid
        assert trial["evidence"] == "", trial  # alive: nothing proven
        alive.send_signal(signal.SIGKILL)
        alive.wait()
        _, report = doctor_json("trials", str(journal))
        (trial,) = report["open_trials"]  # type: ignore[misc]
        assert trial["evidence"] == f"Rustuna worker: process {alive.pid} is gone", trial
        failed = run_doctor("trials", "--fail", str(journal))  # on proof: no --force needed
        assert failed.returncode == 0, failed.stdout + failed.stderr
        assert [t.state.name for t in load(journal).trials] == ["FAIL"]
    finally:
        alive.kill()


def test_a_rustuna_pid_proves_nothing_while_a_container_runs_on_the_host(tmp_path: Path) -> None:
    """A Rustuna worker in a container records the pid its own pid namespace gave it, which
    may name nothing, or another process, out here: while any container runs on the host, no
    pid proves a Rustuna worker gone (fail closed)."""
    need_root("unshare")
    journal = tmp_path / "j.log"
    worker = rustuna_worker(journal, "1", "0", "--ask")
    container = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sleep", "60"])
    try:
        assert first_line(worker).startswith("asked")
        worker.kill()
        worker.wait()
        assert poll(other_pid_namespaces, 10)
        _, report = doctor_json("trials", str(journal))
        (trial,) = report["open_trials"]  # type: ignore[misc]
        assert trial["worker_pid"] == worker.pid
        assert trial["evidence"] == "", trial
    finally:
        container.kill()
        container.wait()


def test_guarded_optuna_and_rustuna_workers_share_a_journal(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    guarded = subprocess.Popen(
        [PYTHON, "-m", "journal_doctor.demo.worker", str(journal), "--guarded", "--trials",
         "300"], stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rust = [rustuna_worker(journal, "300", "0") for _ in range(2)]
    assert guarded.wait(timeout=300) == 0, guarded.stderr.read() if guarded.stderr else ""
    for worker in rust:
        assert worker.wait(timeout=300) == 0
    health = check_journal(str(journal))
    assert health.healthy, health.summary
    assert health.trials_by_state["COMPLETE"] == 900
    optuna_view = [(t.number, t.state.name, t.value) for t in load(journal).trials]
    storage = rustuna.storages.JournalFileStorage(str(journal))
    rust_view = [
        (t.number, t.state.name, t.value)
        for t in rustuna.load_study(study_name="doctor-demo", storage=storage).trials
    ]
    assert optuna_view == rust_view
    assert len(optuna_view) == 900


def test_the_guarded_storage_cannot_serve_a_rustuna_study(tmp_path: Path) -> None:
    """Rustuna's storage protocol is its own (get_studies, get_trials_diff, ...), not Optuna's
    BaseStorage: a Rustuna fleet shares the journal through its own JournalFileStorage, which
    the doctor cleans up after (above). Should Rustuna learn to take an Optuna storage, this
    fails, and the README's line on it changes."""
    with pytest.raises(Exception, match="get_studies"):
        rustuna.create_study(study_name="x", storage=journal_doctor.storage(tmp_path / "j.log"))


def test_a_journal_s_naive_and_aware_times_are_each_answered_in_their_own_dialect(
    tmp_path: Path,
) -> None:
    """A study started by Optuna 4.4 (naive times) and resumed by Rustuna or Optuna 5 (aware):
    ages of both are listed, each FAIL the doctor writes matches its trial's start, so that
    every version subtracts them (3.6-4.4 raise on naive minus aware), and migrate copies and
    verifies both."""
    journal = tmp_path / "j.log"
    storage = rustuna.storages.JournalFileStorage(str(journal))
    study = rustuna.create_study(study_name="doctor-demo", storage=storage)
    study.ask()  # aware: +00:00
    naive = time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.localtime(time.time() - 3600))
    with open(journal, "ab") as f:
        f.write(json.dumps({"op_code": 4, "worker_id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789-1",
                            "study_id": 0, "datetime_start": naive},
                           separators=(",", ":")).encode() + b"\n")  # fmt: skip
    listed = run_doctor("trials", str(journal))
    assert "age=1.0h" in listed.stdout, listed.stdout  # the naive one's, on this host's clock
    failed = run_doctor("trials", "--fail", "--force", str(journal))
    assert failed.returncode == 0, failed.stdout + failed.stderr
    ends = [json.loads(line) for line in journal.read_bytes().splitlines()[-2:]]
    completes = {op["trial_id"]: op["datetime_complete"] for op in ends}
    assert completes[0].endswith("+00:00")
    assert "+" not in completes[1]
    assert check_journal(str(journal)).healthy
    assert [t.state.name for t in load(journal).trials] == ["FAIL", "FAIL"]
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    code, report = doctor_json("migrate", "--force", str(journal), url)
    assert code == 0, report
    assert report["verified"] is True  # both dialects copied, and compared, time for time
