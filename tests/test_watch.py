"""`journal-doctor watch` with a real fleet killed again and again while it runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from journal_doctor.journal.check import check_journal

from helpers import (
    PYTHON,
    Workers,
    age_path,
    kill_guarded_mid_trial,
    poll,
    run_doctor,
    running_trials,
)

pytestmark = pytest.mark.slow


def start_watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([PYTHON, "-m", "journal_doctor", "watch", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def stop_watch(proc: subprocess.Popen[str]) -> tuple[list[dict[str, object]], str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("kind", ["symlink", "open"])
def test_watch_heals_a_fleet_killed_again_and_again(tmp_path: Path, kind: str) -> None:
    """Three studies, a worker each; while watch runs, workers are SIGKILLed (leaving their
    locks) and restarted. Every lock a kill leaves is removed; no live one ever is; every
    journal loads; watch stops on SIGTERM within a pass, leaving no .break file."""
    journals = [tmp_path / f"study{i}" / "j.log" for i in range(3)]
    for journal in journals:
        journal.parent.mkdir()
    watcher = start_watch("--interval", "0.5", "--min-age", "1", str(tmp_path))
    workers = Workers()
    left = 0
    try:
        for round_ in range(4):
            journal = journals[round_ % 3]
            workers.kill_holding(journal, kind)  # loops until a kill leaves the lock
            left += 1
            # A busy worker on another journal keeps its lock coming and going meanwhile.
            busy = workers.start_busy(journals[(round_ + 1) % 3], kind)
            assert poll(lambda j=journal: not os.path.lexists(f"{j}.lock"), 30)
            busy.kill()
            busy.wait()
            # That kill may leave a lock too: watch heals it as well.
            assert poll(lambda: not any(os.path.lexists(f"{j}.lock") for j in journals), 30)
    finally:
        workers.stop_all()
    events, _ = stop_watch(watcher)
    removed = [e for e in events if e["event"] == "removed"]
    assert len([e for e in removed if str(e["path"]).endswith(".lock")]) >= left
    assert all(e["verdict"] == "orphaned" for e in removed)
    for event in events:
        assert set(event) == {"time", "event", "path", "verdict", "reason"}
    for journal in journals:
        assert check_journal(str(journal)).prognosis.value in ("loads", "next-worker-crashes")
    assert not list(tmp_path.rglob("*.break"))


def test_watch_never_removes_a_live_lock_under_load(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    workers = Workers()
    try:
        procs = [workers.start(journal, trials=150) for _ in range(3)]
        # A pass every 50 ms; --min-age 1, far above a hold (milliseconds), as docs/watch.md says
        # to keep it: --min-age 0 would leave unprotected the microseconds in which a plain
        # holder has made its lock but not yet opened the journal (it holds no file then).
        watcher = start_watch("--interval", "0.05", "--min-age", "1", str(tmp_path))
        for proc in procs:
            assert proc.wait(timeout=300) == 0, proc.stderr.read().decode() if proc.stderr else ""
        events, _ = stop_watch(watcher)
    finally:
        workers.stop_all()
    # Nothing was removed while every holder lived, and every trial is in the journal once.
    assert [e for e in events if e["event"] == "removed"] == []
    health = check_journal(str(journal))
    assert health.healthy
    assert health.trials_by_state["COMPLETE"] == 450


def passes_seen_stuck(directory: Path, passes: int) -> None:
    """Wait for `passes` more passes of the watch: each removes an orphaned lock made for it."""
    directory.mkdir(exist_ok=True)
    (directory / "j.log").write_bytes(b"")
    lock = directory / "j.log.lock"
    for _ in range(passes):
        os.symlink("j.log", lock)
        age_path(lock, 10)
        assert poll(lambda: not os.path.lexists(lock), 30)


def test_watch_reports_stuck_then_cleared_and_a_vanished_root(tmp_path: Path) -> None:
    journal = tmp_path / "runs" / "j.log"
    journal.parent.mkdir()
    workers = Workers()
    watcher = start_watch("--interval", "0.3", str(tmp_path / "runs"), str(tmp_path / "gone"))
    try:
        holder = workers.stop_holding(journal)
        age_path(Path(f"{journal}.lock"), 10)
        passes_seen_stuck(tmp_path / "runs" / "other", 3)  # it is reported once all the same
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()
        assert poll(lambda: not os.path.lexists(f"{journal}.lock"), 30)
        # The holder may have released the lock itself between SIGCONT and SIGKILL; then only
        # a pass that starts after it vanished reports it cleared: wait for one.
        passes_seen_stuck(tmp_path / "runs" / "other", 1)
    finally:
        workers.stop_all()
    events, _ = stop_watch(watcher)
    kinds = [(e["event"], str(Path(str(e["path"])).relative_to(tmp_path))) for e in events]
    assert kinds.count(("stuck", "runs/j.log.lock")) == 1
    assert kinds.count(("removed", "runs/other/j.log.lock")) == 4  # the passes counted
    # Whether watch removed it or its holder released it, it is reported cleared after stuck.
    assert kinds.index(("stuck", "runs/j.log.lock")) < kinds.index(("cleared", "runs/j.log.lock"))
    assert kinds.count(("missing", "gone")) == 1


def test_watch_fails_the_trials_of_dead_guarded_workers_only(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    guarded = Workers(extra=("--guarded", "--sleep", "0.3"))
    try:
        kill_guarded_mid_trial(journal, guarded)
        running = running_trials(journal)
        live = guarded.start(journal, trials=100)  # a live guarded worker keeps running
        watcher = start_watch("--fail-stale-trials", "--interval", "0.3", str(tmp_path))
        # The dead worker's trials become FAIL; the live worker's never do.
        assert poll(lambda: check_journal(str(journal)).trials_by_state["FAIL"] >= running, 30)
        events, _ = stop_watch(watcher)
        assert live.poll() is None
    finally:
        guarded.stop_all()
    failed = [e for e in events if e["event"] == "trial-failed"]
    assert len(failed) == running
    assert "heartbeat" in str(failed[0]["reason"])


def test_watch_help_and_bad_interval() -> None:
    assert "systemd" not in run_doctor("watch", "--help").stdout  # help stays short
    assert run_doctor("watch", "--interval", "0").returncode == 2
    assert run_doctor("watch", "--interval", "nan").returncode == 2
