"""check / repair / trials on journals written by real Optuna studies, damaged as crashes do."""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

import journal_doctor.actions.repair as repair_module
from journal_doctor.journal.check import Problem, Prognosis, check_journal

from helpers import (
    PYTHON,
    Workers,
    age_path,
    doctor_json,
    holding_open,
    in_terminal,
    kill_mid_trial,
    poll,
    run_doctor,
)

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)
STUDY = "doctor-demo"


def run_worker(
    journal: Path, trials: int, lock: str = "symlink"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "journal_doctor.demo.worker", str(journal), "--trials", str(trials),
         "--lock", lock],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def states(journal: Path) -> Counter[str]:
    """Trial states as Optuna itself loads them (raises if it cannot)."""
    storage = JournalStorage(
        JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal)))
    )
    study = optuna.load_study(study_name=STUDY, storage=storage)
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def real_study(tmp_path: Path, trials: int = 10) -> Path:
    journal = tmp_path / "j.log"
    assert run_worker(journal, trials).returncode == 0
    assert states(journal)["COMPLETE"] == trials
    return journal


def append(journal: Path, data: bytes) -> None:
    with open(journal, "ab") as f:
        f.write(data)


def test_torn_tail_then_crash_then_unloadable_then_repair(tmp_path: Path) -> None:
    journal = real_study(tmp_path)
    last_line = journal.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[1]
    append(journal, last_line[:60])  # a write cut short

    code, doc = doctor_json("check", str(journal))
    (health,) = doc["journals"]
    assert code == 1
    assert health["prognosis"] == "next-worker-crashes"
    assert health["torn_tail_bytes"] == 60
    assert states(journal)["COMPLETE"] == 10  # Optuna still loads it: the torn line is skipped

    first = run_worker(journal, 3)  # its first op is glued onto the fragment and lost
    assert first.returncode != 0
    code, doc = doctor_json("check", str(journal))
    (health,) = doc["journals"]
    assert health["prognosis"] == "every-load-fails"
    fused = [d for d in health["damage"] if d["problem"] == "fused"]
    assert len(fused) == 1
    with pytest.raises(json.JSONDecodeError):
        states(journal)
    second = run_worker(journal, 3)
    assert second.returncode != 0
    assert "JSONDecodeError" in second.stderr
    damaged = journal.read_bytes()

    result = run_doctor("repair", "--force", str(journal))
    assert result.returncode == 0, result.stderr
    assert "Optuna" in result.stdout
    assert "loads it" in result.stdout
    after = states(journal)
    assert after["COMPLETE"] == 10
    # The salvaged op is in the journal, the fragment in quarantine, the original in a backup.
    fragment_line = damaged.split(b"\n")[fused[0]["line"] - 1]
    assert fragment_line[fused[0]["salvage_offset"] :] + b"\n" in journal.read_bytes()
    (backup,) = list(tmp_path.glob("j.log.*.bak"))
    assert backup.read_bytes() == damaged
    records = [
        json.loads(line) for line in (tmp_path / "j.log.quarantine").read_text().splitlines()
    ]
    assert [r["problem"] for r in records] == ["fused"]
    assert base64.b64decode(records[0]["bytes_b64"]) == fragment_line[: fused[0]["salvage_offset"]]
    assert records[0]["offset"] == fused[0]["offset"]
    # Every line before the damage is byte-identical (workers' cached offsets stay valid).
    assert journal.read_bytes()[: fused[0]["offset"]] == damaged[: fused[0]["offset"]]

    resumed = run_worker(journal, 3)
    assert resumed.returncode == 0, resumed.stderr
    assert states(journal)["COMPLETE"] == 13


@pytest.mark.parametrize(
    ("nuls", "newline", "expected"),
    [
        (4096, False, Prognosis.NEXT_WORKER_CRASHES),  # torn: skipped by Optuna for now
        # A complete line of NULs: json.loads(bytes) guesses UTF-32. 4094 NULs and the newline
        # do not decode (UnicodeDecodeError, fatal even as the last line); 4095 and the newline
        # do (JSONDecodeError, skipped as the last line). check mirrors both, as Optuna does.
        (4094, True, Prognosis.EVERY_LOAD_FAILS),
        (4095, True, Prognosis.NEXT_WORKER_CRASHES),
    ],
    ids=["nul-tail", "nul-line-undecodable", "nul-line-decodable"],
)
def test_nul_tail_from_a_power_loss(
    tmp_path: Path, nuls: int, newline: bool, expected: Prognosis
) -> None:
    journal = real_study(tmp_path)
    append(journal, b"\x00" * nuls + (b"\n" if newline else b""))
    health = check_journal(str(journal))
    assert health.nul_runs == 1
    assert health.nul_bytes == nuls
    assert health.prognosis is expected
    if expected is Prognosis.EVERY_LOAD_FAILS:
        with pytest.raises(UnicodeDecodeError):
            states(journal)
    else:
        assert states(journal)["COMPLETE"] == 10
    code, _ = doctor_json("repair", "--force", str(journal))
    assert code == 0
    assert states(journal)["COMPLETE"] == 10
    assert b"\x00" not in journal.read_bytes()


def test_undecodable_middle_line_goes_to_quarantine_with_its_offset(tmp_path: Path) -> None:
    journal = real_study(tmp_path)
    lines = journal.read_bytes().split(b"\n")
    bad = b'{"op_code":6,"worker\xff\xfe'
    damaged = b"\n".join([*lines[:4], bad, *lines[4:]])
    journal.write_bytes(damaged)
    offset = sum(len(line) + 1 for line in lines[:4])

    health = check_journal(str(journal))
    assert health.prognosis is Prognosis.EVERY_LOAD_FAILS
    (damage,) = health.damage
    assert (damage.line, damage.offset, damage.problem) == (5, offset, Problem.INVALID_UTF8)
    with pytest.raises(UnicodeDecodeError):
        states(journal)

    assert run_doctor("repair", "--force", str(journal)).returncode == 0
    assert states(journal)["COMPLETE"] == 10
    (record,) = [json.loads(x) for x in (tmp_path / "j.log.quarantine").read_text().splitlines()]
    assert record["line"] == 5
    assert record["offset"] == offset
    assert base64.b64decode(record["bytes_b64"]) == bad + b"\n"
    assert journal.read_bytes() == b"\n".join(lines)


def test_valid_json_that_is_not_an_op_breaks_replay_and_is_quarantined(tmp_path: Path) -> None:
    journal = real_study(tmp_path)
    append(journal, b'[1, 2, 3]\n{"op_code": -1, "worker_id": "w"}\n{"worker_id": "w"}\n')
    health = check_journal(str(journal))
    assert health.prognosis is Prognosis.EVERY_LOAD_FAILS
    assert [d.problem for d in health.damage] == [Problem.NOT_AN_OP] * 3
    assert "not an object" in health.damage[0].detail
    assert "unknown op_code -1" in health.damage[1].detail
    with pytest.raises(TypeError):
        states(journal)
    assert run_doctor("repair", "--force", str(journal)).returncode == 0
    assert states(journal)["COMPLETE"] == 10


def test_discard_trials_op_is_a_known_op(tmp_path: Path) -> None:
    journal = real_study(tmp_path)
    append(journal, b'{"op_code":10,"worker_id":"w-1","study_id":0,"trial_ids":[3]}\n')
    health = check_journal(str(journal))
    assert health.healthy
    assert health.ops == len(journal.read_bytes().splitlines())
    assert states(journal)["COMPLETE"] == 10  # Optuna 5.0 skips it
    code, doc = doctor_json("repair", "--force", str(journal))
    assert code == 0
    assert doc["journals"][0]["performed"] is False  # healthy: nothing to do


def test_spaced_json_and_nan_values_are_healthy(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=STUDY, storage=storage)

    def objective(trial: optuna.Trial) -> float:
        trial.report(float("nan"), 0)
        trial.report(float("inf"), 1)
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=3)
    spaced = b"".join(
        json.dumps(json.loads(line)).encode() + b"\n" for line in journal.read_bytes().splitlines()
    )
    assert b", " in spaced
    assert b"NaN" in spaced
    assert b"Infinity" in spaced
    journal.write_bytes(spaced)
    health = check_journal(str(journal))
    assert health.healthy
    assert health.trials_by_state["COMPLETE"] == 3
    loaded = optuna.load_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    assert math.isnan(loaded.trials[0].intermediate_values[0])


def test_repair_refused_while_a_process_holds_the_journal_open(tmp_path: Path) -> None:
    journal = real_study(tmp_path)
    append(journal, b'{"op_code":4,"wor')
    before = journal.read_bytes()
    with holding_open(journal) as holder:
        result = run_doctor("repair", "--force", str(journal))
    assert result.returncode == 1
    assert str(holder.pid) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert journal.read_bytes() == before
    assert not list(tmp_path.glob("*.bak"))
    assert not os.path.lexists(f"{journal}.lock")


def test_repair_refused_while_the_lock_is_held_by_a_stopped_worker(
    tmp_path: Path, workers: Workers
) -> None:
    journal = tmp_path / "j.log"
    proc = workers.stop_holding(journal)
    append(journal, b'{"op_code":4,"wor')  # damaged, so repair has something to do
    before = journal.read_bytes()
    result = run_doctor("repair", "--force", str(journal))
    assert result.returncode == 1
    assert "stuck" in result.stderr
    assert str(proc.pid) in result.stderr
    assert journal.read_bytes() == before
    assert not list(tmp_path.glob("*.bak"))


def test_worker_started_during_repair_waits_for_the_lock_then_succeeds(
    tmp_path: Path, workers: Workers
) -> None:
    journal = real_study(tmp_path)
    last_line = journal.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[1]
    append(journal, last_line[:40])
    started: list[subprocess.Popen[bytes]] = []

    def start_worker_while_locked(path: str) -> None:
        assert os.path.lexists(path + ".lock")  # repair holds the journal's lock
        proc = workers.start(path, trials=2)
        started.append(proc)
        assert not poll(lambda: proc.poll() is not None, 3)  # it waits for the lock

    report = repair_module.repair(
        str(journal), force=True, before_replace=start_worker_while_locked
    )
    assert report.performed
    assert not os.path.lexists(f"{journal}.lock")
    (proc,) = started
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    assert states(journal)["COMPLETE"] == 12
    assert check_journal(str(journal)).healthy


def test_trials_fail_and_retry_after_a_sigkill(tmp_path: Path, workers: Workers) -> None:
    journal = tmp_path / "j.log"
    kill_mid_trial(journal, workers)

    code, listed = doctor_json("trials", str(journal))
    running = [t for t in listed["open_trials"] if t["state"] == "RUNNING"]
    assert code == 1
    # Each killed worker (kill_holding may kill several before one leaves the lock) leaves its
    # own RUNNING trial; none of them moved on to another trial.
    assert running
    assert not any(t["abandoned"] for t in running)
    number = running[-1]["number"]
    before = optuna.load_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    # A kill before the trial sampled anything leaves nothing to run again: failed only.
    expected = [
        "failed+enqueued" if before.trials[t["number"]].params else "failed" for t in running
    ]

    code, done = doctor_json("trials", "--retry", "--force", str(journal))
    assert code == 0
    assert [a["action"] for a in done["actions"]] == expected
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert all(study.trials[t["number"]].state.name == "FAIL" for t in running)
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert len(waiting) == expected.count("failed+enqueued")
    if waiting:
        retried = waiting[-1].user_attrs["journal_doctor_retry_of"]
        assert waiting[-1].system_attrs["fixed_params"] == study.trials[retried].params
        assert study.trials[retried].params
        number = retried

    assert run_worker(journal, len(running)).returncode == 0
    study = optuna.load_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    if waiting:
        rerun = study.trials[waiting[-1].number]
        assert rerun.state.name == "COMPLETE"
        assert rerun.params == study.trials[number].params
    assert doctor_json("trials", str(journal))[1]["open_trials"] == []


def test_a_trial_killed_before_it_had_parameters_is_failed_not_retried(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    study = optuna.create_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    study.ask()  # a worker that dies before its first suggest_*: RUNNING with no params
    del study

    code, done = doctor_json("trials", "--retry", "--force", str(journal))
    assert code == 0
    (action,) = done["actions"]
    assert action["action"] == "failed"
    assert "before it had any parameters" in action["detail"]
    trials = optuna.load_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(journal)))
    ).trials
    assert [t.state.name for t in trials] == ["FAIL"]  # no WAITING trial with {} params


def test_retry_runs_the_same_parameters_again(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=STUDY, storage=storage)
    study.optimize(lambda t: t.suggest_float("x", -10, 10) ** 2, n_trials=2)
    left = study.ask()  # a worker that dies here leaves this trial RUNNING forever
    x = left.suggest_float("x", -10, 10)
    del study, storage

    code, done = doctor_json("trials", "--retry", "--force", str(journal))
    assert code == 0
    assert [a["action"] for a in done["actions"]] == ["failed+enqueued"]
    assert run_worker(journal, 1).returncode == 0
    trials = optuna.load_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(journal)))
    ).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert trials[3].params == {"x": x}
    assert trials[3].user_attrs == {"journal_doctor_retry_of": 2}


def test_trials_fail_only(tmp_path: Path, workers: Workers) -> None:
    journal = tmp_path / "j.log"
    kill_mid_trial(journal, workers, "open")
    running = check_journal(str(journal)).trials_by_state["RUNNING"]
    code, done = doctor_json("trials", "--fail", "--force", str(journal))
    assert code == 0
    assert [a["action"] for a in done["actions"]] == ["failed"] * running
    assert states(journal)["RUNNING"] == 0
    assert states(journal)["WAITING"] == 0


def test_abandoned_flag_when_the_worker_moved_on(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    study = optuna.create_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    first = study.ask()  # never told: left RUNNING
    study.ask()
    health = check_journal(str(journal), open_trials=True)
    flags = {t.number: t.abandoned for t in health.open_trials}
    assert flags == {first.number: True, first.number + 1: False}


def test_trials_fail_breaks_an_orphaned_dangling_lock_instead_of_hanging(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=STUDY, storage=storage)
    study.ask()  # left RUNNING
    os.symlink("runs/j.log", tmp_path / "j.log.lock")  # dangling: Optuna would spin forever
    age_path(tmp_path / "j.log.lock", 60)
    result = run_doctor("trials", "--fail", "--force", str(journal), timeout=60)
    assert result.returncode == 0, result.stderr
    assert states(journal)["FAIL"] == 1
    assert not os.path.lexists(tmp_path / "j.log.lock")


LONG_TRIAL = """
import sys, time, optuna
from journal_doctor.journal.optuna_api import file_backend_class, journal_storage_class, optuna_lock
from journal_doctor.model import LockKind
journal, kind = sys.argv[1], LockKind.FILE if sys.argv[2] == "open" else LockKind.SYMLINK
lock = optuna_lock(journal, kind)
storage = journal_storage_class()(file_backend_class()(journal, lock_obj=lock))
study = optuna.create_study(study_name="doctor-demo", storage=storage, load_if_exists=True)
def objective(trial):
    trial.suggest_float("x", 0, 1)
    print("evaluating", flush=True)
    sys.stdin.readline()  # a long evaluation, until the test says
    return 1.0
study.optimize(objective, n_trials=1)
print("told", study.trials[-1].state.name, flush=True)
"""


@pytest.mark.parametrize("kind", ["symlink", "open"])
def test_trials_never_fails_a_live_plain_worker_s_trial_without_the_user_s_word(
    tmp_path: Path, kind: str
) -> None:
    """A plain Optuna worker evaluating a trial keeps no file open: nothing proves it alive or
    dead. Without a terminal, --fail and --retry refuse (exit 1, nothing written); in a
    terminal, answering No writes nothing. The worker survives and tells its trial."""
    journal = tmp_path / "j.log"
    worker = subprocess.Popen([PYTHON, "-c", LONG_TRIAL, str(journal), kind],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert worker.stdout is not None
        assert worker.stdin is not None
        assert worker.stdout.readline().strip() == "evaluating"
        before = journal.read_bytes()
        for action in ("--fail", "--retry"):
            result = run_doctor("trials", action, str(journal))
            assert result.returncode == 1
            assert "a worker may still be running them" in result.stderr
            assert "pass --force" in result.stderr
            assert journal.read_bytes() == before
        screen = in_terminal("trials", "--retry", str(journal), keys=b"n\r")
        assert "no heartbeat proves abandoned" in screen.output
        assert screen.returncode == 1
        assert journal.read_bytes() == before
        worker.stdin.write("\n")
        worker.stdin.flush()
        assert worker.stdout.readline().split() == ["told", "COMPLETE"]
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
        worker.wait()
