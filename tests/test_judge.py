"""The judge is pure: every row of DESIGN.md's verdict table, built from observations alone.

Network filesystems, other users' processes and disk-sleep cannot be made real in a test sandbox,
so their observations are injected here.
"""

from __future__ import annotations

import pytest

from journal_doctor.judge import judge_leftover, judge_lock
from journal_doctor.model import (
    Filesystem,
    Holder,
    HolderSurvey,
    Identity,
    JournalState,
    LeftoverOrigin,
    LockKind,
    LockObservation,
    Thresholds,
    Verdict,
)
from journal_doctor.scanner import judge_all

LOCAL = Filesystem("ext4", "/", network=False)
NFS = Filesystem("nfs4", "/shared", network=True)
T = Thresholds(min_age=5, shared_min_age=30)


def lock(age: float = 60, fs: Filesystem = LOCAL, **changes: object) -> LockObservation:
    obs = LockObservation(
        path="/r/j.log.lock",
        journal="/r/j.log",
        root="/r",
        identity=Identity(1, 2, 3, LockKind.SYMLINK, "j.log"),
        age_seconds=age,
        owner_uid=1000,
        owner="alice",
        filesystem=fs,
        predates_boot=False,
        dangling=False,
        resolved_target="/r/j.log",
        journal_state=JournalState(True, 10, 0.0, 1, 99, True),
        directory_key=(1, 1),
    )
    return obs._replace(**changes)  # type: ignore[arg-type]


def holder(status: str = "running", pid: int = 4242, writing: bool = True) -> Holder:
    return Holder(pid, "python", "alice", 1000, status, 0.0, "python train.py", writing)


@pytest.mark.parametrize("status", ["running", "sleeping", "disk-sleep"])
def test_live_writer_is_active_whatever_it_is_doing(status: str) -> None:
    j = judge_lock(lock(), (holder(status),), 0, T)
    assert j.verdict is Verdict.ACTIVE
    assert "4242" in j.reason
    assert j.transient


@pytest.mark.parametrize("status", ["stopped", "tracing-stop"])
def test_stopped_writer_is_stuck_and_named(status: str) -> None:
    j = judge_lock(lock(), (holder(status, pid=777),), 0, T)
    assert j.verdict is Verdict.STUCK
    assert "kill -CONT 777" in j.reason
    assert not j.transient


def test_one_running_writer_among_stopped_ones_is_active() -> None:
    j = judge_lock(lock(), (holder("stopped", 1), holder("running", 2)), 0, T)
    assert j.verdict is Verdict.ACTIVE


def test_no_holder_and_old_on_local_fs_is_orphaned() -> None:
    j = judge_lock(lock(age=6), (), 0, T)
    assert j.verdict is Verdict.ORPHANED


def test_no_holder_but_young_on_local_fs_is_recent() -> None:
    j = judge_lock(lock(age=4.9), (), 0, T)
    assert j.verdict is Verdict.RECENT
    assert j.transient


def test_min_age_is_respected_as_given() -> None:
    assert judge_lock(lock(age=4), (), 0, Thresholds(min_age=2)).verdict is Verdict.ORPHANED
    assert judge_lock(lock(age=4), (), 0, Thresholds(min_age=10)).verdict is Verdict.RECENT


def test_older_than_boot_on_local_fs_is_orphaned_even_when_young_or_uninspectable() -> None:
    j = judge_lock(lock(age=1, predates_boot=True), (), 3, T)
    assert j.verdict is Verdict.ORPHANED
    assert "boot" in j.reason


def test_older_than_boot_does_not_decide_on_a_network_fs() -> None:
    j = judge_lock(lock(age=10, fs=NFS, predates_boot=True), (), 0, T)
    assert j.verdict is Verdict.UNKNOWN


def test_live_writer_beats_boot_rule() -> None:
    j = judge_lock(lock(predates_boot=True), (holder(),), 0, T)
    assert j.verdict is Verdict.ACTIVE


def test_network_fs_young_is_unknown_and_transient() -> None:
    j = judge_lock(lock(age=29, fs=NFS), (), 0, T)
    assert j.verdict is Verdict.UNKNOWN
    assert j.transient
    assert "other hosts" in j.reason


def test_network_fs_old_is_orphaned_saying_other_hosts_were_not_seen() -> None:
    j = judge_lock(lock(age=31, fs=NFS), (), 0, T)
    assert j.verdict is Verdict.ORPHANED
    assert "other hosts were not seen" in j.reason


def test_network_fs_uses_shared_min_age_not_min_age() -> None:
    j = judge_lock(lock(age=10, fs=NFS), (), 0, Thresholds(min_age=1, shared_min_age=8))
    assert j.verdict is Verdict.ORPHANED


def test_owner_processes_not_inspectable_is_unknown() -> None:
    j = judge_lock(lock(age=3600), (), 2, T)
    assert j.verdict is Verdict.UNKNOWN
    assert "alice" in j.reason
    assert "root" in j.reason


def test_something_else_at_the_lock_name_is_never_orphaned() -> None:
    obs = lock(age=10**6, identity=Identity(1, 2, 3, LockKind.OTHER, None), predates_boot=True)
    assert judge_lock(obs, (), 0, T).verdict is Verdict.UNKNOWN


def test_dangling_symlink_says_waiters_spin_forever() -> None:
    j = judge_lock(lock(dangling=True), (), 0, T)
    assert j.verdict is Verdict.ORPHANED
    assert "100% CPU" in j.reason
    assert "never fires" in j.reason


def test_zombie_holds_nothing_through_the_survey() -> None:
    # The survey drops zombies before they become holders; a lock whose only "holder" was a
    # zombie therefore has none, and is judged on its age.
    obs = lock(age=60)
    survey = HolderSurvey(holders_by_journal={}, uninspectable_by_uid={})
    (report,) = judge_all([obs], survey, T)
    assert report.verdict is Verdict.ORPHANED


def test_readers_are_workers_not_holders() -> None:
    obs = lock(age=60)
    key = obs.journal_state.key
    assert key is not None
    survey = HolderSurvey(holders_by_journal={key: (holder(writing=False),)})
    (report,) = judge_all([obs], survey, T)
    assert report.verdict is Verdict.ORPHANED
    assert report.holders == ()
    assert [r.pid for r in report.readers] == [4242]


def test_uninspectable_processes_of_another_user_do_not_matter() -> None:
    obs = lock(age=60)
    survey = HolderSurvey(uninspectable_by_uid={1001: 5})
    (report,) = judge_all([obs], survey, T)
    assert report.verdict is Verdict.ORPHANED


@pytest.mark.parametrize("origin", list(LeftoverOrigin))
def test_leftovers_are_removable_once_older_than_min_age(origin: LeftoverOrigin) -> None:
    assert judge_leftover(origin, 6, T).verdict is Verdict.ORPHANED
    young = judge_leftover(origin, 1, T)
    assert young.verdict is Verdict.RECENT
    assert young.transient


@pytest.mark.parametrize(
    ("tail", "size", "expected"),
    [
        (b"", 0, "empty"),
        (b'{"op_code":1,"worker_id":"w","study_id":0}\n', 44, "ok"),
        (b'{"op_code":1,"worker_id":"w","study_id":0}\n{"op_co', 51, "torn-tail"),
        (b'{"op_code":1,"worker_id":"w","study_id":0}\n\x00\x00\x00', 47, "nul-tail"),
        (b'{"op_code":1,"worker_id":"w","study_id":0}\n{"op_code": 1}\n', 60, "bad-tail"),
        (b"x" * 10 + b"\n", 10**9, "ok"),  # the last line is longer than the probe: not judged
    ],
)
def test_scan_journal_health_from_the_tail(tail: bytes, size: int, expected: str) -> None:
    from journal_doctor.integrity import health_of_tail

    assert health_of_tail(tail, size) == expected
