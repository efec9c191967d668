"""journal_doctor.storage(): the guarded lock and trial heartbeats, with real workers killed,
frozen, hammering a journal, and mixed with plain Optuna workers."""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

import journal_doctor
from journal_doctor.errors import LockTimeout
from journal_doctor.guard.lock import GuardedLock
from journal_doctor.journal.check import check_journal
from journal_doctor.model import LockKind
from journal_doctor.protocol.record import holder_path, lock_record, parse, target_token

from helpers import (
    LOCK_KINDS,
    PYTHON,
    Workers,
    doctor_json,
    holding_open,
    line_count,
    poll,
    run_doctor,
    running_trials,
    writes_journal,
)

pytestmark = pytest.mark.slow
GUARDED = ("--guarded",)


def load(journal: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name="doctor-demo", storage=storage)


def holding(tmp_path: Path, *args: Any, **options: Any) -> GuardedLock:
    """A GuardedLock (`args`, `options` as GuardedLock's) that holds the lock of a new, empty
    journal `j.log` in `tmp_path`."""
    journal = tmp_path / "j.log"
    journal.write_bytes(b"")
    guard = GuardedLock(str(journal), *args, **options)
    assert guard.acquire()
    return guard


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_guarded_and_plain_workers_exclude_each_other(tmp_path: Path, kind: str) -> None:
    journal = tmp_path / "j.log"
    logs = [tmp_path / f"w{i}.log" for i in range(4)]
    plain, guarded = Workers(), Workers(extra=GUARDED)
    try:
        procs = [
            (guarded if i % 2 else plain).start(journal, kind, trials=40, log=log)
            for i, log in enumerate(logs)
        ]
        for proc in procs:
            assert proc.wait(timeout=300) == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        plain.stop_all()
        guarded.stop_all()
    health = check_journal(str(journal))
    assert health.healthy, health.summary  # no interleaved or torn line
    trials = {t.number: t for t in load(journal).trials}
    logged = [line.split() for log in logs for line in log.read_text().splitlines()]
    assert len(logged) == 160
    assert len({number for number, _ in logged}) == 160  # every trial exactly once
    for number, value in logged:
        assert repr(trials[int(number)].value) == value
    assert not os.path.lexists(f"{journal}.lock")


def test_killed_guarded_holder_is_orphaned_at_once_and_the_next_worker_goes_on(
    tmp_path: Path,
) -> None:
    workers = Workers(extra=GUARDED)
    try:
        # `runs/j.log` from its parent: Optuna's own lock would dangle; the guarded one links
        # to the journal's bare name, beside it.
        (tmp_path / "runs").mkdir()
        lock = tmp_path / "runs" / "j.log.lock"
        pid = workers.kill_holding(Path("runs/j.log"), "symlink", cwd=tmp_path)
        # Its record was written before its first lock: however early the kill, it is known.
        assert lock_record(str(lock))[1] is not None
        # The link leads to the journal beside it, and carries the token naming its record.
        target = os.readlink(lock)
        assert os.path.basename(target) == "j.log"
        assert os.path.samefile(lock, tmp_path / "runs" / "j.log")
        token = target_token(target)
        assert token is not None
        record_file = Path(holder_path(str(tmp_path / "runs" / "j.log"), token))
        assert record_file.exists()
        _, document = doctor_json("scan", str(tmp_path))
        (judged,) = document["locks"]
        assert judged["dangling"] is False
        assert judged["record"]["pid"] == pid
        assert judged["record"]["host"] == os.uname().nodename
        assert judged["verdict"] == "orphaned"  # at once: no --min-age wait
        assert f"process {pid} is gone" in judged["reason"]
        # A resumed guarded worker breaks it itself: with no timeout and no grace period of
        # Optuna's, it would otherwise wait forever.
        resumed = subprocess.run(
            [PYTHON, "-m", "journal_doctor.demo.worker", "runs/j.log", "--trials", "3",
             *GUARDED], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        assert "broke" in resumed.stderr
        assert not os.path.lexists(lock)
        assert not record_file.exists()  # the dead holder's record went with its lock
    finally:
        workers.stop_all()


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_a_stopped_guarded_holder_is_waited_on_and_named_in_the_timeout(
    tmp_path: Path, kind: str
) -> None:
    workers = Workers(extra=GUARDED)
    journal = tmp_path / "j.log"
    try:
        holder = workers.stop_holding(journal, kind)
        _, document = doctor_json("clean", "--force", str(tmp_path))
        (judged,) = document["locks"]
        assert judged["verdict"] == "stuck"
        assert judged["record"]["pid"] == holder.pid
        assert document["removed"] == []
        lock_kind = LockKind.FILE if kind == "open" else LockKind.SYMLINK
        waiter = GuardedLock(str(journal), lock_kind, timeout=0.5)
        with pytest.raises(LockTimeout) as raised:
            waiter.acquire()
        assert isinstance(raised.value, TimeoutError)
        assert str(holder.pid) in str(raised.value)
        assert "stopped" in str(raised.value)
        assert writes_journal(holder.pid, journal)
    finally:
        workers.stop_all()


HOLD = """
import sys, time
from journal_doctor.guard.lock import GuardedLock
from journal_doctor.model import LockKind
lock = GuardedLock(sys.argv[1], LockKind(sys.argv[2]), heartbeat_interval=0.2, grace_period=1.0)
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
lock.release()
print("released", flush=True)
"""


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_slow_live_holder_is_never_broken(tmp_path: Path, kind: str) -> None:
    """The heartbeat keeps what Optuna's waiters watch fresh: a plain Optuna >= 4.3 worker with
    a 1 s grace period waits for a holder that keeps the lock 4 s, and so does the doctor."""
    journal = tmp_path / "j.log"
    journal.write_bytes(b"")
    lock = Path(f"{journal}.lock")
    holder = subprocess.Popen([PYTHON, "-c", HOLD, str(journal), kind, "4"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    plain = Workers()
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        held = os.lstat(lock)
        waiter = plain.start(journal, "open" if kind == "file" else "symlink", trials=1, grace=1)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # watch the lock for 3 s: three grace periods
            now = os.lstat(lock)
            assert (now.st_ino, now.st_mtime_ns >= held.st_mtime_ns) == (held.st_ino, True)
            assert line_count(journal) == 0
            assert waiter.poll() is None
        _, document = doctor_json("clean", "--force", "--min-age", "0.5", str(tmp_path))
        assert document["locks"][0]["verdict"] == "active"
        assert document["removed"] == []
        assert holder.stdout.readline().strip() == "released"
        assert waiter.wait(timeout=60) == 0
        assert line_count(journal) > 0
    finally:
        holder.kill()
        plain.stop_all()


@pytest.mark.parametrize("kind", [LockKind.SYMLINK, LockKind.FILE])
def test_fencing_a_lock_broken_while_held_is_not_written_under_nor_released(
    tmp_path: Path, kind: LockKind
) -> None:
    guard = holding(tmp_path, kind)
    assert guard.still_held()
    # Another waiter broke it (we were frozen past the grace period) and took a new one.
    os.rename(guard.path, tmp_path / "broken")
    os.symlink("j.log", guard.path)
    newer = os.lstat(guard.path)
    assert not guard.still_held()
    guard.release()
    assert os.lstat(guard.path).st_ino == newer.st_ino  # the newer holder's lock stays
    assert guard.lost == 1


def test_a_beat_never_writes_into_another_holder_s_open_lock_nor_counts(tmp_path: Path) -> None:
    """The lock was broken while this process held it, and another holder's open lock took
    the name, often on the very inode (ext4 reuses a removed file's inode number at once):
    the beat leaves its record alone, and this holder stays silent, so that its release
    looks twice (the token) before touching the name."""
    guard = holding(tmp_path, LockKind.FILE)
    theirs = replace(guard._template, token="f" * 16, pid=1).to_json()
    silent_since = guard.last
    os.unlink(guard.path)
    fd = os.open(guard.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, theirs)
    os.close(fd)
    guard.beat()
    assert Path(guard.path).read_bytes() == theirs
    assert guard.last == silent_since
    guard._beaten_at -= 2 * guard.grace_period  # silent long enough for others to break it
    assert not guard.still_held()  # even on the same inode: the token inside is another's
    assert not guard.may_write()
    guard.release()
    assert Path(guard.path).read_bytes() == theirs  # never moved, never removed
    assert guard.lost == 1


def test_a_lock_left_naming_this_process_is_removed_by_its_next_acquire(tmp_path: Path) -> None:
    """A release that put its own lock back (it could not prove the file its own, or a race
    with a frozen holder's release) leaves a lock naming a live process: everyone would wait on
    it forever. Its own next acquire removes it; other waiters never do."""
    guard = holding(tmp_path, timeout=3.0)
    link = os.readlink(guard.path)
    guard.release()
    os.symlink(link, guard.path)  # put back: this process's lock, held by none of its threads
    other = GuardedLock(guard.journal, timeout=0.5)
    with pytest.raises(LockTimeout, match="alive"):
        other.acquire()  # the record names a live process: never broken by another
    assert os.readlink(guard.path) == link
    assert guard.acquire()
    assert guard.still_held()
    guard.release()
    assert not os.path.lexists(guard.path)


def test_a_lock_held_by_another_thread_of_this_process_is_waited_on(tmp_path: Path) -> None:
    guard = holding(tmp_path)
    guard.timeout = 0.5
    failed: list[LockTimeout] = []

    def wait() -> None:
        try:
            guard.acquire()
        except LockTimeout as err:
            failed.append(err)

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join()
    (timeout,) = failed
    assert "another thread of this process" in str(timeout)
    assert guard.still_held()
    guard.release()
    assert not os.path.lexists(guard.path)


def test_a_live_holder_s_record_never_describes_a_later_plain_lock(tmp_path: Path) -> None:
    guard = holding(tmp_path)
    record_file = Path(holder_path(guard.journal, guard._template.token))
    kept = parse(record_file.read_bytes())
    assert kept is not None
    # A tool that knows nothing of records removes the lock, and a plain worker takes a new
    # one: the guarded process's record is still there, and names a live process.
    os.unlink(guard.path)
    os.symlink("j.log", guard.path)
    _, document = doctor_json("scan", str(tmp_path))
    (judged,) = document["locks"]
    assert judged["record"] is None
    assert judged["verdict"] == "recent"  # judged as a plain lock
    again = parse(record_file.read_bytes())  # beaten meanwhile, perhaps: the same process
    assert again is not None
    assert (again.token, again.pid) == (kept.token, os.getpid())
    assert not guard.still_held()


def kill_in_a_trial(journal: Path) -> None:
    """SIGKILL a guarded worker whose objective sleeps, once it has a trial RUNNING."""
    workers = Workers(extra=(*GUARDED, "--sleep", "0.3"))
    try:
        for _ in range(10):
            before = running_trials(journal) if journal.exists() else 0
            victim = workers.start(journal, trials=100)

            def started(before: int = before) -> bool:
                return line_count(journal) > 8 and running_trials(journal) > before

            assert poll(started, 60)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            if running_trials(journal) > before:
                return
        raise AssertionError("no kill left a RUNNING trial in 10 attempts")
    finally:
        workers.stop_all()


def test_trial_heartbeats_fail_and_retry_a_killed_workers_trial(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    kill_in_a_trial(journal)
    running = [t for t in load(journal).trials if t.state.name == "RUNNING"]
    assert len(running) == 1  # the objective sleeps: the kill landed inside a trial
    killed = running[0].number
    _, listed = doctor_json("trials", str(journal))
    (open_trial,) = listed["open_trials"]
    assert open_trial["abandoned"] is True
    assert "heartbeat" in open_trial["evidence"]
    resumed = subprocess.run(
        [PYTHON, "-m", "journal_doctor.demo.worker", str(journal), "--trials", "3", *GUARDED],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    trials = load(journal).trials
    assert trials[killed].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1
    assert retries[0].state.name == "COMPLETE"
    assert retries[0].params == trials[killed].params
    assert os.listdir(f"{journal}.heartbeats") == []  # the dead worker's file is pruned, and
    # the one that finished removed its own at exit


def test_storage_rejects_a_heartbeat_slower_than_its_grace_period(tmp_path: Path) -> None:
    import journal_doctor

    with pytest.raises(ValueError, match="grace_period"):
        journal_doctor.storage(tmp_path / "j.log", heartbeat_interval=5, grace_period=5)
    with pytest.raises(ValueError, match="symlink"):
        journal_doctor.storage(tmp_path / "j.log", lock="fcntl")
    storage = journal_doctor.storage(tmp_path / "j.log", lock="open")
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert isinstance(storage, optuna.storages._heartbeat.BaseHeartbeat)
    assert optuna.storages._heartbeat.is_heartbeat_enabled(storage)


def test_a_zombie_holder_is_dead_and_a_live_one_alive() -> None:
    """A SIGKILLed worker whose parent never reaps it (a container's init that does not wait)
    keeps its pid and start time as a zombie: it holds nothing."""
    from journal_doctor.protocol.record import Liveness, judge_record, start_ticks, this_process

    child = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"])
    try:
        record = replace(
            this_process(token="t", interval=1, grace=5),
            pid=child.pid,
            start_ticks=start_ticks(child.pid) or 0,
        )
        assert judge_record(record, 0, 0).liveness is Liveness.ALIVE
        child.send_signal(signal.SIGSTOP)
        assert poll(lambda: judge_record(record, 0, 0).liveness is Liveness.STOPPED, 10)
        child.kill()
        assert poll(lambda: judge_record(record, 0, 0).liveness is Liveness.DEAD, 10)
        assert "exited" in judge_record(record, 0, 0).why  # still unreaped: a zombie
    finally:
        child.kill()
        child.wait()
    assert judge_record(record, 0, 0).why.endswith("is gone")


def test_guarded_demo_resumes_without_a_clean_and_retries_the_killed_trial(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "journal_doctor", "demo", "--guarded"],
        capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "per its holder record" in result.stdout
    assert "broke the dead holder's lock at once" in result.stdout
    said = " ".join(result.stdout.split())  # as read, whatever Rich wrapped
    killed = re.search(r"in the middle of trial (\d+)", said)
    assert killed, said
    assert f"Trial {killed[1]} is no longer RUNNING" in said
    assert "Nothing is left RUNNING" in said
    assert "journal-doctor clean" not in result.stdout.split("Resume")[1]
    assert list(tmp_path.iterdir()) == []


def test_trials_fail_acts_on_heartbeat_proof_and_asks_for_the_rest(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    kill_in_a_trial(journal)
    study = load(journal)
    (proven,) = [t.number for t in study.trials if t.state.name == "RUNNING"]
    unproven = study.ask()  # a plain worker's trial: RUNNING, no heartbeat at all
    before = journal.read_bytes()
    with holding_open(journal, "rb"):  # a live worker of the study reads the journal
        result = run_doctor("trials", "--fail", str(journal))
        assert result.returncode == 1
        assert f"trial(s) {unproven.number} (no heartbeat proves" in result.stderr
        assert journal.read_bytes() == before  # nothing written: not even the proven one
        study.tell(unproven, 1.0)  # its worker finishes it
        code, done = doctor_json("trials", "--fail", str(journal))
    assert [(a["number"], a["action"]) for a in done["actions"]] == [(proven, "failed")]
    assert code == 0
    states = {t.number: t.state.name for t in load(journal).trials}
    assert (states[proven], states[unproven.number]) == ("FAIL", "COMPLETE")


def test_a_forked_child_s_locks_name_the_child_and_its_exit_keeps_the_parent_s_record(
    tmp_path: Path,
) -> None:
    guard = holding(tmp_path)
    parent_record = Path(holder_path(guard.journal, guard._template.token))
    guard.release()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child takes the lock, says whom it names, exits as Python does
        status = 1
        try:
            guard.acquire()
            found = lock_record(guard.path)[1]
            os.write(write, f"{found.record.pid if found else 0}\n".encode())
            guard.release()
            atexit._run_exitfuncs()  # what a normal exit runs: weakref.finalize's hook too
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as answer:
        named = int(answer.read().strip() or 0)
    assert os.waitpid(child, 0)[1] == 0
    assert named == child  # the child's lock names the child, not its parent
    assert parent_record.exists()  # the child's exit removed none of the parent's files


def test_a_forked_child_s_trial_beats_name_the_child_and_its_exit_keeps_the_worker_s_file(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.log"
    storage = journal_doctor.storage(str(journal))
    worker_file = Path(storage._heartbeats.path)  # type: ignore[attr-defined]
    assert worker_file.exists()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child beats a trial it runs, then exits as Python does
        status = 1
        try:
            storage.record_heartbeat(7)  # type: ignore[attr-defined]
            beat = parse(Path(worker_file.parent, "trial-7").read_bytes())
            os.write(write, f"{beat.pid if beat else 0}\n".encode())
            atexit._run_exitfuncs()
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as answer:
        named = int(answer.read().strip() or 0)
    assert os.waitpid(child, 0)[1] == 0
    assert named == child  # the trial's beat names the process that runs it
    assert worker_file.exists()  # the child's exit removed none of the parent's files
