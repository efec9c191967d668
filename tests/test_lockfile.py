"""protocol.lockfile.remove_if: the one rename-verify-unlink-or-restore every removal uses
(clean's break, the guarded lock's release and break, a dead holder's record)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from journal_doctor.protocol.lockfile import Identity, Removal, identity, is_file, remove_if
from journal_doctor.protocol.record import link_target, target_token


def make_lock(tmp_path: Path) -> tuple[str, str, Identity]:
    lock = tmp_path / "j.log.lock"
    os.symlink("j.log", lock)
    return str(lock), str(tmp_path / "aside"), identity(os.lstat(lock))


def test_the_expected_lock_is_removed_and_nothing_is_left_aside(tmp_path: Path) -> None:
    lock, aside, judged = make_lock(tmp_path)
    assert remove_if(lock, aside, is_file(judged)) is Removal.REMOVED
    assert not os.path.lexists(lock)
    assert not os.path.lexists(aside)


def test_another_lock_is_never_moved(tmp_path: Path) -> None:
    """Its live holder would find it gone, even for a moment: it is checked where it is."""
    lock, aside, judged = make_lock(tmp_path)
    another = (judged[0], judged[1] + 1, judged[2])
    before = os.lstat(lock)
    assert remove_if(lock, aside, is_file(another)) is Removal.LEFT
    after = os.lstat(lock)
    assert (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)  # no rename
    assert os.readlink(lock) == "j.log"
    assert not os.path.lexists(aside)


def changes_after_the_first_look(lock: str, then: Callable[[str], bool]) -> Callable[[str], bool]:
    """A check that finds the expected lock at the name, and `then` on the file renamed aside:
    the name changed hands between the check and the rename."""

    def check(found: str) -> bool:
        return found == lock or then(found)

    return check


def test_a_lock_that_changed_after_the_check_is_put_back_untouched(tmp_path: Path) -> None:
    lock, aside, judged = make_lock(tmp_path)
    check = changes_after_the_first_look(lock, lambda found: False)
    assert remove_if(lock, aside, check) is Removal.PUT_BACK
    assert identity(os.lstat(lock)) == judged
    assert os.readlink(lock) == "j.log"
    assert not os.path.lexists(aside)


def test_another_lock_displaced_by_a_newer_one_is_left_aside(tmp_path: Path) -> None:
    lock, aside, judged = make_lock(tmp_path)

    def a_newer_lock_arrives(found: str) -> bool:
        os.symlink("j.log", lock)  # a worker took the free name meanwhile
        return False

    check = changes_after_the_first_look(lock, a_newer_lock_arrives)
    assert remove_if(lock, aside, check) is Removal.DISPLACED
    assert os.lstat(lock).st_ino != judged[1]  # the newer lock keeps the name
    assert os.lstat(aside).st_ino == judged[1]  # the one found waits for a later judgement


def test_a_new_lock_on_a_reused_inode_is_not_the_one_made(tmp_path: Path) -> None:
    lock, aside, judged = make_lock(tmp_path)
    os.unlink(lock)  # removed by someone else; a new lock made at once often gets its inode
    os.symlink("j.log", lock)
    os.utime(lock, ns=(judged[2] + 1, judged[2] + 1), follow_symlinks=False)  # made later
    assert remove_if(lock, aside, is_file(judged)) is Removal.LEFT


def test_a_name_nobody_holds_is_gone(tmp_path: Path) -> None:
    assert remove_if(str(tmp_path / "j.log.lock"), str(tmp_path / "aside"), bool) is Removal.GONE


def test_a_check_that_raises_leaves_the_lock_where_it_is(tmp_path: Path) -> None:
    lock, aside, judged = make_lock(tmp_path)

    def unreadable(found: str) -> bool:
        raise PermissionError(13, "Permission denied", found)

    with pytest.raises(PermissionError):
        remove_if(lock, aside, unreadable)
    assert identity(os.lstat(lock)) == judged
    assert not os.path.lexists(aside)


def test_a_check_that_raises_aside_puts_the_lock_back_first(tmp_path: Path) -> None:
    lock, aside, judged = make_lock(tmp_path)

    def unreadable_aside(found: str) -> bool:
        raise PermissionError(13, "Permission denied", found)

    with pytest.raises(PermissionError):
        remove_if(lock, aside, changes_after_the_first_look(lock, unreadable_aside))
    assert identity(os.lstat(lock)) == judged
    assert not os.path.lexists(aside)


@pytest.mark.parametrize("token", ["0" * 16, "f" * 16, "0123456789abcdef"])
def test_a_guarded_link_leads_to_the_journal_and_carries_its_token(
    tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "runs").mkdir()
    journal = tmp_path / "runs" / ".j.log"  # a name starting with a dot, as a step does
    journal.write_bytes(b"{}\n")
    target = link_target(journal.name, token)
    os.symlink(target, tmp_path / "runs" / ".j.log.lock")
    monkeypatch.chdir(tmp_path)  # Optuna's waiters stat the lock from anywhere
    assert os.path.samefile("runs/.j.log.lock", journal)
    assert target_token(os.readlink("runs/.j.log.lock")) == token


@pytest.mark.parametrize("target", ["j.log", "./j.log", "runs/j.log", "/abs/j.log", "", "./" * 64])
def test_a_plain_optuna_target_carries_no_token(target: str) -> None:
    assert target_token(target) is None
    assert target_token(link_target("j.log", "a" * 16)[2:]) is None  # one step short
