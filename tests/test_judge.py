"""The judge is pure: every row of DESIGN.md's verdict table, built from observations alone.

Network filesystems, other users' processes and disk-sleep cannot be made real in a test sandbox,
so their observations are injected here.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from journal_doctor.locks.judge import judge_leftover, judge_lock
from journal_doctor.locks.scan import judge_all
from journal_doctor.model import (
    Blindness,
    Filesystem,
    Holder,
    HolderSurvey,
    Identity,
    JournalState,
    LeftoverOrigin,
    LockKind,
    LockObservation,
    Prognosis,
    TailHealth,
    Thresholds,
    Unseen,
    Verdict,
)

LOCAL = Filesystem(type="ext4", network=False)
NFS = Filesystem(type="nfs4", network=True)
T = Thresholds(min_age=5, shared_min_age=30)


def unseen(blindness: Blindness) -> tuple[Unseen, ...]:
    return (Unseen(blindness=blindness, sentence=f"({blindness.value}: not seen)"),)


def lock(age: float = 60, fs: Filesystem = LOCAL, **changes: object) -> LockObservation:
    obs = LockObservation(
        path="/r/j.log.lock",
        journal="/r/j.log",
        root="/r",
        identity=Identity(device=1, inode=2, mtime_ns=3, kind=LockKind.SYMLINK, target="j.log"),
        age_seconds=age,
        owner_uid=1000,
        owner="alice",
        filesystem=fs,
        predates_boot=False,
        dangling=False,
        resolved_target="/r/j.log",
        journal_state=JournalState(
            exists=True, size=10, mtime=0.0, device=1, inode=99, health=True
        ),
        directory_key=(1, 1),
        unseen=unseen(Blindness.NETWORK_FS) if fs.network else (),
    )
    return replace(obs, **changes)  # type: ignore[arg-type]


def holder(status: str = "running", pid: int = 4242, writing: bool = True) -> Holder:
    return Holder(
        pid=pid,
        name="python",
        user="alice",
        status=status,
        started=0.0,
        cmdline="python train.py",
        writing=writing,
    )


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
    assert "run journal-doctor on the other hosts" in j.reason


def test_network_fs_old_is_orphaned_saying_other_hosts_were_not_seen() -> None:
    j = judge_lock(lock(age=31, fs=NFS), (), 0, T)
    assert j.verdict is Verdict.ORPHANED
    assert "network-filesystem: not seen" in j.reason


def test_network_fs_uses_shared_min_age_not_min_age() -> None:
    j = judge_lock(lock(age=10, fs=NFS), (), 0, Thresholds(min_age=1, shared_min_age=8))
    assert j.verdict is Verdict.ORPHANED


def test_owner_processes_not_inspectable_is_unknown() -> None:
    j = judge_lock(lock(age=3600), (), 2, T)
    assert j.verdict is Verdict.UNKNOWN
    assert "alice" in j.reason
    assert "root" in j.reason


def test_something_else_at_the_lock_name_is_never_orphaned() -> None:
    obs = lock(
        age=10**6,
        identity=Identity(device=1, inode=2, mtime_ns=3, kind=LockKind.OTHER, target=None),
        predates_boot=True,
    )
    assert judge_lock(obs, (), 0, T).verdict is Verdict.UNKNOWN


def test_dangling_symlink_says_what_waiters_of_every_version_do() -> None:
    j = judge_lock(lock(dangling=True), (), 0, T)
    assert j.verdict is Verdict.ORPHANED
    assert "<= 4.2 quietly" in j.reason
    assert ">= 4.3 spinning at 100% CPU" in j.reason
    assert "never fires" in j.reason


@pytest.mark.parametrize("blindness", list(Blindness))
def test_every_blind_spot_makes_the_shared_rule_decide(blindness: Blindness) -> None:
    young = judge_lock(lock(age=29, unseen=unseen(blindness)), (), 0, T)
    assert young.verdict is Verdict.UNKNOWN
    assert young.transient
    assert f"{blindness.value}: not seen" in young.reason
    assert "To decide:" in young.reason
    old = judge_lock(lock(age=31, unseen=unseen(blindness)), (), 0, T)
    assert old.verdict is Verdict.ORPHANED
    assert f"{blindness.value}: not seen" in old.reason


def test_container_young_lock_says_run_on_the_host() -> None:
    j = judge_lock(lock(age=10, unseen=unseen(Blindness.CONTAINER)), (), 0, T)
    assert j.verdict is Verdict.UNKNOWN
    assert "outside the container" in j.reason


def test_boot_rule_holds_in_a_container_but_not_for_other_hosts() -> None:
    # A container shares the host's kernel: a lock older than its boot has no live holder
    # here. Clients of an export, or other hosts on a share, may have made it before.
    in_container = lock(age=1, predates_boot=True, unseen=unseen(Blindness.CONTAINER))
    assert judge_lock(in_container, (), 0, T).verdict is Verdict.ORPHANED
    for other_hosts in (Blindness.EXPORTED, Blindness.SHARED, Blindness.NETWORK_FS):
        obs = lock(age=1, predates_boot=True, unseen=unseen(other_hosts))
        assert judge_lock(obs, (), 0, T).verdict is Verdict.UNKNOWN


def test_an_unreadable_lock_is_unknown_however_old() -> None:
    obs = lock(age=10**6, predates_boot=True, unreadable="Operation not permitted")
    j = judge_lock(obs, (), 0, T)
    assert j.verdict is Verdict.UNKNOWN
    assert "Operation not permitted" in j.reason
    assert not j.transient


def test_infinite_min_age_never_judges_by_age() -> None:
    forever = Thresholds(min_age=float("inf"), shared_min_age=float("inf"))
    assert judge_lock(lock(age=10**9), (), 0, forever).verdict is Verdict.RECENT
    assert judge_lock(lock(age=10**9, fs=NFS), (), 0, forever).verdict is Verdict.UNKNOWN


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


OP = b'{"op_code":1,"worker_id":"w","study_id":0}\n'
CRASHES, FAILS, LOADS = (
    Prognosis.NEXT_WORKER_CRASHES,
    Prognosis.EVERY_LOAD_FAILS,
    Prognosis.LOADS,
)


@pytest.mark.parametrize(
    ("tail", "size", "health", "prognosis"),
    [
        (b"", 0, TailHealth.EMPTY, LOADS),
        (OP, len(OP), TailHealth.OK, LOADS),
        (OP + b'{"op_co', len(OP) + 7, TailHealth.TORN_TAIL, CRASHES),
        (OP + b"\x00\x00\x00", len(OP) + 3, TailHealth.NUL_TAIL, CRASHES),
        (OP + b'{"op_code": 1}\n', len(OP) + 15, TailHealth.BAD_TAIL, FAILS),  # KeyError
        (OP + b'{"op_co{"op_code":1}\n', len(OP) + 21, TailHealth.BAD_TAIL, CRASHES),
        (OP + b'{"op_co' + OP + OP, 3 * len(OP) + 7, TailHealth.BAD_TAIL, FAILS),  # #5138
        (b"x" * 10 + b"\n", 10**9, TailHealth.OK, LOADS),  # longer than the probe: not judged
    ],
)
def test_scan_journal_health_from_the_tail(
    tail: bytes, size: int, health: TailHealth, prognosis: Prognosis
) -> None:
    from journal_doctor.journal.probe import judge_tail

    assert judge_tail(tail, size) == (health, prognosis)
