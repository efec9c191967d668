"""journal_doctor.storage() as a drop-in: it crosses process boundaries as JournalStorage does,
beats per trial as Optuna's BaseHeartbeat defines it, and its guard fails closed: a beat that
raises does not stop beating, a holder silent past its grace period does not write under a lock
it may have lost, and without the filesystem's clock another host's holder is never judged."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest

import journal_doctor
from journal_doctor.actions.trials import list_trials
from journal_doctor.errors import LockTimeout
from journal_doctor.guard.lock import GuardedLock
from journal_doctor.journal.check import check_journal
from journal_doctor.model import LockKind
from journal_doctor.protocol.record import filesystem_now, new_token, this_process

from helpers import PYTHON, guarded_symlink_lock, need_root, poll, running_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -10, 10) ** 2


def run_trials(storage: Any, n_trials: int) -> tuple[int, str, str]:
    """In a child process: the study on the unpickled storage; who this process is to it."""
    study = optuna.load_study(study_name="pickled", storage=storage)
    study.optimize(objective, n_trials=n_trials)
    return os.getpid(), storage._heartbeats.path, storage._backend._lock._template.token


def assert_every_trial_once(journal: Path, expected: int) -> None:
    assert check_journal(str(journal)).healthy
    study = optuna.load_study(study_name="pickled", storage=journal_doctor.storage(journal))
    trials = study.trials
    assert len(trials) == expected
    assert sorted(t.number for t in trials) == list(range(expected))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_a_guarded_study_runs_in_a_spawn_pool(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    storage = journal_doctor.storage(journal)
    optuna.create_study(study_name="pickled", storage=storage)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        who = pool.starmap(run_trials, [(storage, 5)] * 4)
    # Each unpickling made its own worker and lock state, whatever process it landed in.
    assert len({beat for _, beat, _ in who}) == 4
    assert len({token for _, _, token in who}) == 4
    assert_every_trial_once(journal, 20)


@pytest.mark.slow
def test_a_guarded_study_runs_through_joblib_s_loky_backend(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    journal = tmp_path / "j.log"
    storage = journal_doctor.storage(journal, lock="open")
    optuna.create_study(study_name="pickled", storage=storage)
    parallel = joblib.Parallel(n_jobs=2, backend="loky")
    who = parallel(joblib.delayed(run_trials)(storage, 5) for _ in range(4))
    assert len({beat for _, beat, _ in who}) == 4
    assert_every_trial_once(journal, 20)


def abandoned(journal: Path) -> dict[int, str]:
    """number -> evidence, of the RUNNING trials `trials` would fail as abandoned."""
    trials = list_trials(str(journal)).health.open_trials
    return {t.number: t.evidence for t in trials if t.evidence}


@pytest.mark.slow
def test_heartbeats_are_per_trial_and_trials_applies_the_same_rule(tmp_path: Path) -> None:
    """Three trials of one live process: one beaten once and abandoned, one beaten on, one
    never beaten (ask-and-tell without heartbeats). Only the abandoned one is stale, for
    `study.optimize` (fail_stale_trials) and for `journal-doctor trials` alike."""
    journal = tmp_path / "j.log"
    storage = journal_doctor.storage(journal, heartbeat_interval=0.2, grace_period=1.0)
    study = optuna.create_study(study_name="s", storage=storage)
    left, beaten, unbeaten = study.ask(), study.ask(), study.ask()
    storage.record_heartbeat(left._trial_id)
    stop = multiprocessing.Event()

    def beat_on() -> None:
        while not stop.wait(0.2):
            storage.record_heartbeat(beaten._trial_id)

    import threading

    beater = threading.Thread(target=beat_on, daemon=True)
    beater.start()
    try:
        assert poll(lambda: left.number in abandoned(journal), 10)
        found = abandoned(journal)
        assert "abandoned" in found[left.number]
        assert str(os.getpid()) in found[left.number]
        assert set(found) == {left.number}  # the beaten and the unbeaten trials live on
        stale = storage._get_stale_trial_ids(study._study_id)
        assert stale == [left._trial_id]
        optuna.storages.fail_stale_trials(study)
        states = {t.number: t.state.name for t in study.trials}
        assert states == {left.number: "FAIL", beaten.number: "RUNNING", unbeaten.number: "RUNNING"}
        # A finished trial's beat is gone with it.
        assert not (Path(f"{journal}.heartbeats") / f"trial-{left._trial_id}").exists()
    finally:
        stop.set()
        beater.join()


FINISHING = """
import os, sys, time, optuna, journal_doctor
journal, evaluating, returning, go = sys.argv[1:]
storage = journal_doctor.storage(journal, heartbeat_interval=0.2, grace_period=1.0)
study = optuna.create_study(study_name="s", storage=storage)

def objective(trial):
    x = trial.suggest_float("x", 0, 1)  # written: nothing more to write until the result
    open(evaluating, "w").close()
    while not os.path.exists(go):
        time.sleep(0.02)
    open(returning, "w").close()
    return x

study.optimize(objective, n_trials=1)
"""


@pytest.mark.slow
def test_a_trial_whose_result_waits_for_the_lock_is_not_abandoned(tmp_path: Path) -> None:
    """Optuna's heartbeat thread stops when the objective returns, before the result is
    written; that write may wait for the lock past a grace period (through sshfs a released
    lock looks held for 20 s). Meanwhile the trial is beaten on: no worker fails a trial
    that has a result (on the two-host bed one did, 2 runs in 8, before)."""
    journal, go = tmp_path / "j.log", tmp_path / "go"
    evaluating, returning = tmp_path / "evaluating", tmp_path / "returning"
    worker = subprocess.Popen([PYTHON, "-c", FINISHING, *map(str, (journal, evaluating, returning,
                                                                  go))])  # fmt: skip
    guard = GuardedLock(str(journal), LockKind.SYMLINK, heartbeat_interval=0.2, grace_period=1.0)
    try:
        assert poll(lambda: worker.poll() is None and evaluating.exists(), 60)
        assert guard.acquire()
        try:
            go.touch()
            assert poll(returning.exists, 10)
            deadline = time.monotonic() + 3.0  # three grace periods, the result unwritten
            while time.monotonic() < deadline:
                assert abandoned(journal) == {}
                assert running_trials(journal) == 1
        finally:
            guard.release()
        assert worker.wait(timeout=60) == 0
    finally:
        worker.kill()
    study = optuna.load_study(study_name="s", storage=journal_doctor.storage(journal))
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert not list(Path(f"{journal}.heartbeats").glob("trial-*"))  # its beat ended with it


def test_the_lock_s_heartbeat_survives_any_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception no beat expects (injected: nothing real raises one on demand) is logged
    once, and beating goes on: a holder that stopped would be judged dead by other hosts."""
    journal = tmp_path / "j.log"
    journal.touch()
    guard = GuardedLock(str(journal), LockKind.FILE, heartbeat_interval=0.1, grace_period=1.0)
    real = guard._refresh
    failures = iter(range(5))

    def flaky() -> None:
        if next(failures, None) is not None:
            raise RuntimeError("injected")
        real()

    monkeypatch.setattr(guard, "_refresh", flaky)
    caplog.set_level(logging.ERROR, logger="journal_doctor")
    assert guard.acquire()
    try:
        first = Path(guard.path).read_bytes()
        assert poll(lambda: Path(guard.path).read_bytes() != first, 10)  # it beats again
        assert guard.may_write()
    finally:
        guard.release()
    assert len([r for r in caplog.records if "heartbeat" in r.getMessage()]) == 1


HOLDER = """
import sys
from journal_doctor.guard.lock import GuardedLock
from journal_doctor.model import LockKind
guard = GuardedLock(sys.argv[1], LockKind.SYMLINK, heartbeat_interval=0.2, grace_period=1.0)
guard.acquire()
print("held", flush=True)
sys.stdin.readline()
data = b'{"op_code":1,"worker_id":"frozen-0","study_id":99}\\n'
while not guard.append(sys.argv[1], data):
    print("refused", flush=True)
    guard.release()
    guard.acquire()
guard.release()
print("written", guard.lost, flush=True)
"""

PLAIN_WRITER = """
import sys
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
lock = JournalFileSymlinkLock(sys.argv[1], grace_period=1)
backend = JournalFileBackend(sys.argv[1], lock_obj=lock)
backend.append_logs([{"op_code": 1, "worker_id": "plain-0", "study_id": 98}])
print("plain wrote", flush=True)
"""


@pytest.mark.slow
def test_a_holder_frozen_past_its_grace_period_does_not_write_under_a_lost_lock(
    tmp_path: Path,
) -> None:
    """A guarded holder is frozen (SIGSTOP: no beats) while it holds the lock; a plain Optuna
    waiter breaks it after its own 1 s grace period, writes and releases. Continued, the holder
    does not write as if it still held the lock: it takes it again, then writes once."""
    journal = tmp_path / "j.log"
    journal.touch()
    holder = subprocess.Popen(
        [PYTHON, "-c", HOLDER, str(journal)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGSTOP)
        plain = subprocess.run(
            [PYTHON, "-c", PLAIN_WRITER, str(journal)], capture_output=True, text=True, timeout=60
        )
        assert plain.stdout.strip() == "plain wrote", plain.stderr
        holder.send_signal(signal.SIGCONT)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        out = holder.communicate(timeout=60)[0].split("\n")
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.kill()
        holder.wait()
    assert out[0] == "refused"  # silent past its grace period, its lock broken: no write
    assert out[1].startswith("written")
    assert int(out[1].split()[1]) >= 1
    lines = journal.read_text().splitlines()
    assert sorted(lines) == sorted(
        ['{"op_code":1,"worker_id":"plain-0","study_id":98}',
         '{"op_code":1,"worker_id":"frozen-0","study_id":99}']
    )  # fmt: skip


@contextlib.contextmanager
def full_filesystem(where: Path) -> Iterator[Path]:
    """A real tmpfs, filled up: no block and no inode left."""
    need_root()
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=64", "jd-full", where],
                   check=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)


def fill(directory: Path) -> None:
    with contextlib.suppress(OSError), open(directory / "ballast", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    for i in range(1000):
        try:
            (directory / f"inode-{i}").touch()
        except OSError:
            break


def a_dead_remote_holder(directory: Path) -> Path:
    """A guarded symlink lock and its record as a worker in a container on this host (another
    pid namespace: /proc here cannot look it up) writes them, whose heartbeat (the journal's
    mtime) stopped a minute ago: what a worker that died there leaves."""
    journal = directory / "j.log"
    journal.write_bytes(b'{"op_code":0,"worker_id":"w-0","study_name":"s","directions":[1]}\n')
    record = replace(this_process(token=new_token(), interval=2.0, grace=10.0),
                     host="container-1", pid_namespace=4026532999, pid=4242)  # fmt: skip
    lock = guarded_symlink_lock(journal, record)
    then = time.time() - 60
    os.utime(lock, (then, then), follow_symlinks=False)  # taken a minute ago
    os.utime(journal, (then, then))
    return lock


def test_without_the_filesystem_s_clock_a_remote_holder_is_never_judged_dead(
    tmp_path: Path,
) -> None:
    with full_filesystem(tmp_path / "full") as full:
        lock = a_dead_remote_holder(full)
        # With room left, the filesystem's clock ages the heartbeat: stale.
        assert filesystem_now(str(full)) is not None
        assert journal_doctor.scan(full).locks[0].verdict is journal_doctor.Verdict.ORPHANED
        fill(full)
        assert filesystem_now(str(full)) is None
        (report,) = journal_doctor.scan(full).locks
        assert report.verdict is journal_doctor.Verdict.UNKNOWN
        assert "clock could not be read" in report.judgement.reason
        waiter = GuardedLock(str(full / "j.log"), heartbeat_interval=0.2, grace_period=1.0,
                             timeout=2)  # fmt: skip
        with pytest.raises(LockTimeout) as waited:
            waiter.acquire()
        assert "clock could not be read" in waited.value.waiting_on
        assert os.path.lexists(lock)  # waited; never broke
