"""Look at each candidate artifact: lstat, symlink target, journal, filesystem, boot time.

Nothing here follows a lock symlink (lstat and readlink only) or opens anything that might
block: the journal is opened only after its type was checked to be a regular file, and then
with O_NONBLOCK. A lock that cannot be read is still observed (as unreadable), never dropped.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from typing import Any

from ..errors import os_error_advice
from ..journal.probe import probe_journal
from ..model import (
    OTHER_HOSTS,
    SERVER_TIMES,
    Blindness,
    Filesystem,
    Identity,
    JournalState,
    LockKind,
    LockObservation,
    Unseen,
)
from ..protocol.record import (
    Found,
    Seen,
    caching_filesystem,
    filesystem_now,
    judge_record,
    lock_record,
    read_record,
    same_host,
    to_watch,
    watch_all,
)
from .discover import LeftoverCandidate, LockCandidate
from .visibility import Sight


@cache
def user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def lock_kind(
    st: os.stat_result,
    target: str | None,
    journal_path: str,
    journal: JournalState,
    guarded: bool = False,
) -> LockKind | None:
    """What stands at `<J>.lock`, or None when it is not an Optuna lock (poetry.lock, ...)."""
    if stat.S_ISLNK(st.st_mode):
        # Optuna links `<J>.lock -> J as given`, so the target always ends with J's name; an
        # unreadable target (None) is judged by the journal beside it.
        if target is None:
            return LockKind.SYMLINK if _could_be_journal(journal) else None
        if os.path.basename(target) == os.path.basename(journal_path):
            return LockKind.SYMLINK
    elif stat.S_ISREG(st.st_mode) and (st.st_size == 0 or guarded) and _could_be_journal(journal):
        return LockKind.FILE  # empty (Optuna's), or holding a guarded lock's record
    return LockKind.OTHER if journal.looks_like_journal else None


def _could_be_journal(journal: JournalState) -> bool:
    return not journal.exists or journal.looks_like_journal


class Observer:
    """Inspects artifacts; caches the blind spots, boot time and directory identities."""

    def __init__(self, now: float | None = None, shared: bool = False) -> None:
        self.now = time.time() if now is None else now
        self.sight = Sight(shared)
        self._boot_time: float | None = None
        self._directories: dict[str, tuple[int, int]] = {}
        self._clocks: dict[str, float | None] = {}
        self._beats: dict[str, tuple[float, float]] = {}  # lock -> (beat, monotonic) first seen

    @property
    def boot_time(self) -> float:
        if self._boot_time is None:
            import psutil

            self._boot_time = psutil.boot_time()
        return self._boot_time

    def directory_key(self, directory: str) -> tuple[int, int]:
        key = self._directories.get(directory)
        if key is None:
            st = os.stat(directory)
            key = (st.st_dev, st.st_ino)
            self._directories[directory] = key
        return key

    def observe_lock(self, candidate: LockCandidate) -> LockObservation | None:
        """None when the artifact vanished or is not an Optuna lock (poetry.lock, ...).

        A lock whose lstat or readlink fails (EPERM through sshfs, EACCES, ESTALE, EIO) is
        observed as `unreadable`: the judge makes it unknown, and it blocks a resume."""
        journal = probe_journal(candidate.journal)
        unreadable: str | None = None
        target: str | None = None
        try:
            st = self._lstat_listed(candidate.path)
        except FileNotFoundError:
            return None  # released between discovery and now
        except OSError as err:
            return self._unreadable(candidate, journal, os_error_advice(err))
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(candidate.path)
            except FileNotFoundError:
                return None
            except OSError as err:
                unreadable = os_error_advice(err)
        found = read_record(candidate.path, st, target) if unreadable is None else None
        if found is not None:
            self._beats[candidate.path] = (found.beat_mtime, time.monotonic())
        kind = lock_kind(st, target, candidate.journal, journal, guarded=found is not None)
        if kind is None:
            return None
        directory = os.path.dirname(candidate.path) or "."
        directory_key = self.directory_key(directory)
        filesystem = self.sight.filesystem(directory_key[0])
        resolved, dangling = _resolve(kind, target, directory, candidate.journal, journal)
        unseen = self.sight.unseen(directory, filesystem)
        age, unseen = self._age(st, directory, unseen)
        judged = self._judge_record(found, directory, filesystem, unseen) if found else None
        return LockObservation(
            path=candidate.path,
            journal=candidate.journal,
            root=candidate.root,
            identity=Identity(
                device=st.st_dev, inode=st.st_ino, mtime_ns=st.st_mtime_ns, kind=kind, target=target
            ),
            age_seconds=age,
            owner_uid=st.st_uid,
            owner=user_name(st.st_uid),
            filesystem=filesystem,
            predates_boot=st.st_mtime < self.boot_time,
            dangling=dangling,
            resolved_target=resolved,
            journal_state=journal,
            directory_key=directory_key,
            unseen=unseen,
            unreadable=unreadable,
            record=found.record if found else None,
            record_judgement=judged,
        )

    def watch_stale(self, observations: Sequence[LockObservation]) -> list[LockObservation]:
        """The observations again, once every other host's heartbeat that looks stale has
        been watched (`protocol.record.watch_all`; one wait for all): one that moved meanwhile
        is alive. Timestamps alone may lag a live holder's beats."""
        seen = self._seen(observations)
        if not to_watch(seen):
            return list(observations)
        judged = watch_all(seen, lambda path: self._beat_now(path, seen[path].record.token))
        return [replace(obs, record_judgement=judged.get(obs.path, obs.record_judgement))
                for obs in observations]  # fmt: skip

    def stale_to_watch(self, observations: Sequence[LockObservation]) -> int:
        return len(to_watch(self._seen(observations)))

    def _seen(self, observations: Sequence[LockObservation]) -> dict[str, Seen]:
        return {
            obs.path: Seen(
                record=obs.record,
                judged=obs.record_judgement,
                beat=self._beats[obs.path][0],
                at=self._beats[obs.path][1],
            )
            for obs in observations
            if obs.record is not None
            and obs.record_judgement is not None
            and obs.path in self._beats
        }

    @staticmethod
    def _beat_now(path: str, token: str) -> float | None:
        """The lock's beat read again; None when it is gone or another holder's now (whoever
        breaks it verifies its identity first)."""
        try:
            found = lock_record(path)[1]
        except OSError:
            return None
        return found.beat_mtime if found is not None and found.record.token == token else None

    def _lstat_listed(self, path: str) -> os.stat_result:
        """lstat of a name the directory listing just showed. On NFS a failed exclusive create
        (a waiter's symlink() meeting the lock) leaves a negative entry that the client trusts
        until the directory changes (measured on the NFSv4.2 bed: a live lock missing from
        `clean`). So there, before believing it gone, change the directory (the clock's probe
        file does) and look again: the lookup then goes to the server. On a local filesystem
        a lock gone since the listing was released: nothing is made there."""
        try:
            return os.lstat(path)
        except FileNotFoundError:
            directory = os.path.dirname(path) or "."
            if not self.sight.filesystem(self.directory_key(directory)[0]).network:
                raise
            self._clocks.pop(directory, None)
            self._filesystem_now(directory)
            return os.lstat(path)

    def _age(
        self, st: os.stat_result, directory: str, unseen: tuple[Unseen, ...]
    ) -> tuple[float, tuple[Unseen, ...]]:
        """How old the lock is, and the blind spots with one more where that cannot be told."""
        if not any(u.blindness in SERVER_TIMES for u in unseen):
            return max(0.0, self.now - st.st_mtime), unseen
        now = self._filesystem_now(directory)
        if now is None:
            why = (f"the filesystem's clock could not be read (nothing can be created in"
                   f" {directory}), so the lock's age is not known")  # fmt: skip
            return 0.0, (*unseen, Unseen(blindness=Blindness.NO_CLOCK, sentence=why))
        return max(0.0, now - max(st.st_mtime, st.st_ctime)), unseen

    def _filesystem_now(self, directory: str) -> float | None:
        if directory not in self._clocks:
            self._clocks[directory] = filesystem_now(directory)
        return self._clocks[directory]

    def _judge_record(
        self, found: Found, directory: str, filesystem: Filesystem, unseen: tuple[Unseen, ...]
    ) -> Any:
        """What the record proves. Another host's heartbeat is aged on the filesystem's clock."""
        fs_now = self.now if same_host(found.record) else self._filesystem_now(directory)
        local = not any(u.blindness in OTHER_HOSTS for u in unseen)
        caching = caching_filesystem(filesystem.type, filesystem.network)
        return judge_record(found.record, found.beat_mtime, fs_now, local, caching)

    def _unreadable(
        self, candidate: LockCandidate, journal: JournalState, why: str
    ) -> LockObservation:
        """Not even lstat worked: all that is known is the name and the journal beside it."""
        directory = os.path.dirname(candidate.path) or "."
        try:
            directory_key = self.directory_key(directory)
        except OSError:
            directory_key = (0, 0)
        filesystem = self.sight.filesystem(directory_key[0])
        return LockObservation(
            path=candidate.path,
            journal=candidate.journal,
            root=candidate.root,
            identity=Identity(device=0, inode=0, mtime_ns=0, kind=LockKind.OTHER, target=None),
            age_seconds=0.0,
            owner_uid=-1,
            owner="?",
            filesystem=filesystem,
            predates_boot=False,
            dangling=False,
            resolved_target=None,
            journal_state=journal,
            directory_key=directory_key,
            unseen=self.sight.unseen(directory, filesystem),
            unreadable=why,
        )

    def leftover_age(self, candidate: LeftoverCandidate) -> tuple[os.stat_result, float] | None:
        try:
            st = os.lstat(candidate.path)
        except FileNotFoundError:
            return None
        # A rename keeps the lock's mtime but sets ctime: a `.rename` made a moment ago by a
        # release in progress must look young, or removing it would crash that worker.
        changed = max(st.st_mtime, st.st_ctime)
        return st, max(0.0, self.now - changed)


def _resolve(
    kind: LockKind, target: str | None, directory: str, journal_path: str, journal: JournalState
) -> tuple[str | None, bool]:
    """(where a symlink lock's target leads, whether it dangles). Optuna's waiters stat it."""
    if kind is not LockKind.SYMLINK or target is None:
        return None, False
    resolved = os.path.normpath(os.path.join(directory, target))
    if resolved == os.path.normpath(journal_path):
        return resolved, not journal.exists  # stat'ed already
    return resolved, not os.path.exists(resolved)
