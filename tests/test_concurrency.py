"""Doctors racing each other, and a doctor racing Optuna's own grace-period break."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import journal_doctor

from helpers import PYTHON, Workers, age_path

pytestmark = pytest.mark.slow


def test_two_doctors_at_once_never_both_claim_a_lock(tmp_path: Path) -> None:
    locks = []
    for i in range(300):
        study = tmp_path / f"s{i:03d}"
        study.mkdir()
        (study / "j.log").write_bytes(b"")
        lock = study / "j.log.lock"
        if i % 2:
            os.symlink("j.log", lock)
        else:
            lock.touch()
        age_path(lock, 60)
        locks.append(str(lock))
    cmd = [PYTHON, "-m", "journal_doctor", "clean", "--force", "--json", str(tmp_path)]
    doctors = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    documents = [json.loads(d.communicate(timeout=120)[0]) for d in doctors]
    removed = [set(doc["removed"]) for doc in documents]
    assert removed[0].isdisjoint(removed[1])
    assert removed[0] | removed[1] == set(locks)
    for doc in documents:
        for outcome in doc["outcomes"]:
            assert outcome["outcome"] in ("removed", "gone"), outcome
    assert not any(os.path.lexists(lock) for lock in locks)
    assert not [p for p in tmp_path.rglob("*journal-doctor*")]


@pytest.mark.parametrize("min_age", [0.9, 1.2, 1.5])
def test_doctor_racing_optunas_grace_break_never_deletes_the_fresh_lock(
    tmp_path: Path, workers: Workers, monkeypatch: pytest.MonkeyPatch, min_age: float
) -> None:
    journal = tmp_path / "j.log"
    workers.kill_holding(journal)
    stale = tmp_path / "j.log.lock"
    # The doctor (min_age about 1 s) and the waiters (started now, 1 s grace period after their
    # ~0.5 s start-up) come for the stale lock at about the same moment.
    age_path(stale, 0)
    stale_identity = (os.lstat(stale).st_ino, os.lstat(stale).st_mtime_ns)

    # Record the identity of every file the doctor unlinks (its break unlinks the private name).
    unlinked: list[tuple[int, int]] = []
    real_unlink = os.unlink

    def recording_unlink(path: str, *, dir_fd: int | None = None) -> None:
        if "journal-doctor" in str(path):
            st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
            unlinked.append((st.st_ino, st.st_mtime_ns))
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", recording_unlink)
    # Waiters with a 1 s grace period: they force-break the stale lock while the doctor runs,
    # then take fresh locks at the same name.
    for _ in range(3):
        workers.start(journal, trials=30, grace=1)
    deadline = time.monotonic() + 30
    removed = conflicts = 0
    while time.monotonic() < deadline and any(p.poll() is None for p in workers.procs[-3:]):
        report = journal_doctor.clean([str(tmp_path)], force=True, min_age=min_age)
        removed += len(report.removed)
        conflicts += sum(o.outcome.value == "conflict" for o in report.outcomes)
    monkeypatch.undo()
    print(f"doctor removed {removed}, conflicts {conflicts}, unlinked {len(unlinked)}")
    assert all(identity == stale_identity for identity in unlinked), (unlinked, stale_identity)
    assert len(unlinked) <= 1  # the one stale lock, if the doctor got there first
    for proc in workers.procs[-3:]:
        proc.wait(timeout=60)
