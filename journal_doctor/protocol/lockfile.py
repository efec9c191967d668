"""A journal lock's names, and the one way anything removes a lock or its record.

`remove_if`: the file at the name is checked to be the one expected, and another is never
moved (its live holder would find its lock gone, even for a moment); then it is renamed aside to
a private name in the same directory (atomic: of two removers exactly one wins it), checked
again there (the name may have changed between the check and the rename), then unlinked, or
else put back under its name untouched. Optuna releases its own lock so
(`<lock><uuid4>.rename`, then unlink); with it the guarded lock releases its own lock,
`clean` and the guarded waiter break an orphaned one (`<lock>.journal-doctor-<hex>.break`),
and a breaker removes a dead holder's record. Never through a symlink: the rename, the link
and the unlink act on the name itself.
"""

from __future__ import annotations

import enum
import os
import stat
import uuid
from collections.abc import Callable

LOCK_SUFFIX = ".lock"
DOCTOR_BREAK_INFIX = ".journal-doctor-"
DOCTOR_BREAK_SUFFIX = ".break"

Identity = tuple[int, int, int]  # (st_dev, st_ino, a symlink's st_mtime_ns, else 0)


def lock_path(journal: str) -> str:
    return journal + LOCK_SUFFIX


def release_name(lock: str) -> str:
    """Optuna's own name for a lock being released (scan knows it as a leftover)."""
    return f"{lock}{uuid.uuid4()}.rename"


def doctor_break_name(lock_name: str, token: str | None = None) -> str:
    """The doctor's name for a lock (or record) being broken."""
    return f"{lock_name}{DOCTOR_BREAK_INFIX}{token or uuid.uuid4().hex}{DOCTOR_BREAK_SUFFIX}"


class Removal(enum.Enum):
    REMOVED = "removed"  # it was the one expected: gone
    GONE = "gone"  # nothing had the name
    LEFT = "left untouched"  # another one: never moved
    PUT_BACK = "put back"  # another one: back under its name, untouched
    DISPLACED = "displaced"  # another one, and a newer one took the name meanwhile: left aside


def remove_if(
    name: str, aside: str, expected: Callable[[str], bool], *, dir_fd: int | None = None
) -> Removal:
    """Remove `name` if `expected` says the file is the one judged, asked of the name and then
    of the file renamed to `aside`. If the second check raises, the file is put back before the
    error goes on."""
    try:
        if not expected(name):
            return Removal.LEFT
        os.rename(name, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except FileNotFoundError:
        return Removal.GONE
    try:
        same = expected(aside)
    except BaseException:
        _put_back(aside, name, dir_fd)
        raise
    if same:
        os.unlink(aside, dir_fd=dir_fd)
        return Removal.REMOVED
    return _put_back(aside, name, dir_fd)


def _put_back(aside: str, name: str, dir_fd: int | None) -> Removal:
    try:
        os.link(aside, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        return Removal.DISPLACED
    os.unlink(aside, dir_fd=dir_fd)
    return Removal.PUT_BACK


def identity(st: os.stat_result) -> Identity:
    """A lock's identity: its device and inode, and a symlink's mtime, set when it is made and
    never changed after (an open lock's changes with each beat of its record). The inode of a
    removed lock is soon given to the next file made there (tmpfs, ext4): a new lock must not
    pass for the one a holder made."""
    return st.st_dev, st.st_ino, st.st_mtime_ns if stat.S_ISLNK(st.st_mode) else 0


def is_file(expected: Identity, dir_fd: int | None = None) -> Callable[[str], bool]:
    """`expected` for `remove_if`: the very file that was judged or made."""

    def check(aside: str) -> bool:
        return identity(os.stat(aside, dir_fd=dir_fd, follow_symlinks=False)) == expected

    return check
