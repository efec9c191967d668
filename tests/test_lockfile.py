"""protocol.lockfile.remove_if: the one rename-verify-unlink-or-restore every removal uses
(clean's break, the guarded lock's release and break, a dead holder's record)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from journal_doctor.protocol.lockfile import Removal, is_file, remove_if


def make_lock(tmp_path: Path) -> tuple[str, str, tuple[int, int]]:
    lock = tmp_path / "j.log.lock"
    os.symlink("j.log", lock)
    st = os.lstat(lock)
    return str(lock), str(tmp_path / "aside"), (st.st_dev, st.st_ino)


def test_the_expected_lock_is_removed_and_nothing_is_left_aside(tmp_path: Path) -> None:
    lock, aside, identity = make_lock(tmp_path)
    assert remove_if(lock, aside, is_file(identity)) is Removal.REMOVED
    assert not os.path.lexists(lock)
    assert not os.path.lexists(aside)


def test_another_lock_is_put_back_untouched(tmp_path: Path) -> None:
    lock, aside, identity = make_lock(tmp_path)
    assert remove_if(lock, aside, is_file((identity[0], identity[1] + 1))) is Removal.PUT_BACK
    assert (os.lstat(lock).st_dev, os.lstat(lock).st_ino) == identity
    assert os.readlink(lock) == "j.log"
    assert not os.path.lexists(aside)


def test_another_lock_displaced_by_a_newer_one_is_left_aside(tmp_path: Path) -> None:
    lock, aside, identity = make_lock(tmp_path)

    def a_newer_lock_arrives(found: str) -> bool:
        os.symlink("j.log", lock)  # a worker took the free name meanwhile
        return False

    assert remove_if(lock, aside, a_newer_lock_arrives) is Removal.DISPLACED
    assert os.lstat(lock).st_ino != identity[1]  # the newer lock keeps the name
    assert os.lstat(aside).st_ino == identity[1]  # the one found waits for a later judgement


def test_a_name_nobody_holds_is_gone(tmp_path: Path) -> None:
    assert remove_if(str(tmp_path / "j.log.lock"), str(tmp_path / "aside"), bool) is Removal.GONE


def test_a_check_that_raises_puts_the_lock_back_first(tmp_path: Path) -> None:
    lock, aside, identity = make_lock(tmp_path)

    def unreadable(found: str) -> bool:
        raise PermissionError(13, "Permission denied", found)

    with pytest.raises(PermissionError):
        remove_if(lock, aside, unreadable)
    assert (os.lstat(lock).st_dev, os.lstat(lock).st_ino) == identity
    assert not os.path.lexists(aside)
