"""Whether anything may be using a journal right now: the check before `repair` and `migrate`
touch it (`trials` writes through the guarded storage, which waits for a live holder instead).
One rule for both: a lock judged anything but orphaned, or a live process with the journal open,
refuses the action (and names what to do)."""

from __future__ import annotations

import os
import stat

from ..errors import Refused
from ..locks.holders import users_of_journal
from ..locks.scan import scan
from ..model import LockKind, LockReport, OutcomeKind, Verdict
from ..protocol.lockfile import lock_path
from ..words import processes


def refuse_if_in_use(
    journal: str,
    st: os.stat_result,
    action: str,
    *,
    break_orphaned: bool = False,
) -> LockKind | None:
    """Raise Refused while the journal may be in use; return the kind of its orphaned lock.

    `break_orphaned`: break an orphaned lock through the break protocol.
    """
    kind: LockKind | None = None
    for lock in scan(journal).locks:
        _refuse_lock(journal, lock, action)
        kind = lock.observation.identity.kind
        if break_orphaned:
            _break(lock)
    users, hidden = users_of_journal(journal, st)
    if users:
        raise Refused(
            f"{journal}: process {processes(users)} has it open; stop the workers before you"
            f" {action}."
        )
    if hidden:
        raise Refused(
            f"{journal}: {hidden} process(es) of its owner could not be inspected; run the"
            f" doctor as the journal's owner or as root to {action}."
        )
    return kind


def _refuse_lock(journal: str, lock: LockReport, action: str) -> None:
    if lock.verdict is not Verdict.ORPHANED:
        raise Refused(
            f"{journal}: its lock is {lock.verdict.value} ({lock.judgement.reason}) Only"
            f" {action} when no worker is running: stop them, or wait and retry."
        )


def _break(lock: LockReport) -> None:
    from ..locks.clean import break_lock

    outcome = break_lock(lock)
    if outcome.outcome not in (OutcomeKind.REMOVED, OutcomeKind.GONE):
        raise Refused(f"{lock.path}: could not remove the orphaned lock: {outcome.detail}")


def lock_kind_of(journal: str, default: LockKind) -> LockKind:
    """The kind of the journal's lock if it has one now, else `default`. The directory's
    listing is asked, not the name (an NFS client may trust its memory of a missing name)."""
    lock = os.path.basename(lock_path(journal))
    try:
        with os.scandir(os.path.dirname(journal) or ".") as entries:
            for entry in entries:
                if entry.name == lock:
                    return LockKind.SYMLINK if entry.is_symlink() else LockKind.FILE
    except OSError:
        pass  # unlistable: the name alone decides
    try:
        st = os.lstat(lock_path(journal))
    except FileNotFoundError:
        return default
    return LockKind.SYMLINK if stat.S_ISLNK(st.st_mode) else LockKind.FILE
