"""The guarded lock: Optuna's own `<journal>.lock` protocol, plus a record naming its holder, a
heartbeat while held, and an acquire that breaks a provably dead holder's lock at once.

- Taking it is Optuna's: `symlink(<journal's file name>, lock)` or `open(lock, O_CREAT|O_EXCL)`,
  so plain Optuna workers on the same journal exclude it and are excluded by it. The symlink's
  target is the journal's bare file name, resolved beside the lock: it never dangles, whatever
  the working directory or the mount point of each host; `./` and `.//` steps before the name
  carry this process's token, which names its record.
- The record (`protocol.record`) goes inside an open lock, one per hold; a symlink lock's is
  the process's own, written once before its first hold (`guard.heartbeat.HolderFile`).
- While held, a thread beats every `heartbeat_interval`: it rewrites the record and touches
  what Optuna's own waiters watch (the journal's mtime for a symlink lock, the lock's for an
  open one), so neither they nor the doctor break a slow but live holder.
- Waiting, it judges the lock with the doctor's own judge: a record whose process is gone or
  reused, or whose heartbeat is older than its grace period, is dead; a plain lock is judged as
  `clean` judges it with `grace_period` as its minimum age. A dead holder's lock is broken
  through the doctor's break protocol (rename, verify, unlink), a live one never; it backs off
  (1 ms doubling to 1 s, as Optuna does) and logs who it waits on every 10 s.
- Release is Optuna's (rename, unlink), after unbinding the record, and only of its own lock.
- Fencing (`append`): a holder writes only while the lock is still the file it made and it has
  beaten within its grace period (else others may have judged it dead); the append holds a
  POSIX byte-range lock on the journal, which an NFSv4 server revokes when a cut-off client's
  lease runs out (its late write then fails instead of landing over other hosts' lines); a lock
  found broken after the write raises `LockLost` rather than go on as if nothing happened.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import replace

from ..errors import JournalWriteFailed, LockLost, LockTimeout
from ..locks.discover import LockCandidate
from ..locks.visibility import locks_stay_local
from ..model import LockKind, LockReport, OutcomeKind, Thresholds, Verdict
from ..protocol.lockfile import (
    Identity,
    Removal,
    doctor_break_name,
    identity,
    is_file,
    lock_path,
    release_name,
    remove_if,
)
from ..protocol.record import (
    MAX_RECORD,
    HolderRecord,
    Liveness,
    filesystem_now,
    holder_path,
    judge_record,
    link_target,
    lock_record,
    lock_token,
    new_token,
    parse,
    same_host,
    this_process,
)
from .heartbeat import HolderFile, keep_beating

logger = logging.getLogger("journal_doctor")

HEARTBEAT_INTERVAL = 2.0  # seconds between beats while the lock is held
GRACE_PERIOD = 10.0  # five beats: a holder silent this long is dead or frozen
LOG_EVERY = 10.0
_MAX_BACKOFF = 1.0
# A hold lasts a write and an fsync (milliseconds). Only a lock that stays the same file longer
# than this is worth judging; until then a waiter only backs off (as Optuna's own does).
_JUDGE_AFTER = 0.02
_REAL_REFUSAL = 20  # EPERM on a free name this many times in a row: a real permission error


class GuardedLock:
    """A lock object for Optuna's `JournalFileBackend(..., lock_obj=...)`."""

    def __init__(
        self,
        journal: str,
        kind: LockKind = LockKind.SYMLINK,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        grace_period: float = GRACE_PERIOD,
        timeout: float | None = None,
    ) -> None:
        if kind is LockKind.OTHER:
            raise ValueError("a guarded lock is a symlink or an open (O_EXCL) file")
        self.journal = journal
        self.path = lock_path(journal)
        self.directory = os.path.dirname(journal) or "."
        self.kind = kind
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.timeout = timeout
        self._target = os.path.basename(journal)
        self._start()

    def _start(self) -> None:
        """The state of one process's lock: made anew when a storage is unpickled elsewhere, and
        in a forked child."""
        self._held: Identity | None = None  # of the lock this process made
        self._record: HolderRecord | None = None
        self._beat = threading.Lock()  # the heartbeat and release() never overlap
        self._taking = threading.Lock()  # a link this thread just made is marked held first
        self._beaten_at = 0.0  # monotonic: the take or the last beat that succeeded
        self._beat_failed = False  # a failing beat is logged once, not every tick
        self.lost = 0  # times the lock was found broken while held (fencing)
        self._refusals = 0
        # A byte-range lock the server never sees fences nothing (NFS mounted nolock) and
        # still costs two round trips per append: read once per process, as mounted here.
        self._fence = not locks_stay_local(self.directory)
        # Who this process is, read now: built inside the first hold, it left a window of
        # tens of milliseconds (psutil's import) in which a kill left a lock with no record.
        token = new_token()
        self._template = this_process(token=token, interval=self.heartbeat_interval,
                                      grace=self.grace_period)  # fmt: skip
        self._link = link_target(self._target, token)
        self._holder_file: HolderFile | None = None  # written before the first symlink lock
        self._publish_failed = False
        _LOCKS.add(self)
        keep_beating(self)

    def __getstate__(self) -> dict[str, object]:
        keep = ("journal", "path", "directory", "kind", "heartbeat_interval", "grace_period",
                "timeout", "_target")  # fmt: skip
        return {name: self.__dict__[name] for name in keep}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._start()

    # --- acquire ---------------------------------------------------------------------------

    def acquire(self) -> bool:
        started = time.monotonic()
        backoff, next_log = 0.001, started + LOG_EVERY
        seen: tuple[int, int, int] | None = None  # the lock in the way, and since when
        since = started
        waiting_on = "a holder for a moment."
        vanished = 0  # times in a row the name was taken, yet lstat found nothing
        while True:
            if self._take():
                return True
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                vanished += 1
                if vanished > 1 and not self._seen_gone():
                    backoff = _pause(backoff)
                continue  # released meanwhile: try again at once
            vanished = 0
            if seen != (st.st_dev, st.st_ino, st.st_mtime_ns):
                seen, since = (st.st_dev, st.st_ino, st.st_mtime_ns), time.monotonic()
            elif time.monotonic() - since >= _JUDGE_AFTER:
                judged = self._break_if_dead()
                if judged is None:
                    seen = None
                    continue  # broken, or released meanwhile: try again at once
                waiting_on = judged
            now = time.monotonic()
            if self.timeout is not None and now - started >= self.timeout:
                raise LockTimeout(
                    f"{self.path}: not acquired in {self.timeout:g}s; {waiting_on} If that"
                    " holder is gone, `journal-doctor scan` says why the lock is kept.",
                    path=self.path,
                    waiting_on=waiting_on,
                )
            if now >= next_log:
                logger.warning("waiting %.0fs for %s: %s", now - started, self.path, waiting_on)
                next_log = now + LOG_EVERY
            backoff = _pause(backoff)

    def try_acquire(self) -> bool:
        """One attempt, no waiting, nothing broken: True when this process now holds the lock
        (what a tool that must not wait on a worker does: `repair`)."""
        return self._take()

    def _seen_gone(self) -> bool:
        """The name was taken (EEXIST) again, but lstat says again it is gone: not a release
        between the two calls (that happens once, and is tried again at once) but, likely, a
        negative entry an NFS client left when our exclusive create failed, trusted until the
        directory changes (measured on NFSv4.2). Changing the directory makes the next lookup
        ask the server; True when the lock is really gone."""
        filesystem_now(self.directory)  # a file made and removed there: the directory changed
        return not os.path.lexists(self.path)

    def _take(self) -> bool:
        """Optuna's own move; True when this process now holds the lock."""
        try:
            if self.kind is LockKind.SYMLINK:
                if self._holder_file is None:
                    self._publish()
                with self._taking:
                    os.symlink(self._link, self.path)
                    st = os.lstat(self.path)
                    self._held = identity(st)
                record = self._template
            else:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
                try:
                    st = os.fstat(fd)
                    record = self._file_record()
                    os.write(fd, record.to_json())
                finally:
                    os.close(fd)
        except OSError as err:
            if err.errno == errno.EEXIST:
                return False
            if err.errno not in (errno.EPERM, errno.EACCES):
                raise
            # sshfs answers EPERM for an exclusive create on a name that exists (Optuna only
            # retries EEXIST, and crashes there). The holder may release it before we look:
            # only an EPERM while the name stays free, again and again, is a real refusal.
            self._refusals = 0 if os.path.lexists(self.path) else self._refusals + 1
            if self._refusals >= _REAL_REFUSAL:
                raise
            return False
        self._refusals = 0
        self._beaten_at = time.monotonic()
        self._held, self._record = identity(st), record
        return True

    def _file_record(self) -> HolderRecord:
        """An open lock's record: it lives inside that very lock, one per acquisition."""
        now = time.time()
        return replace(self._template, token=new_token(), acquired_at=now, heartbeat_at=now)

    def _publish(self) -> None:
        """This process's record, before its first symlink lock names it: a kill right after
        the link is made leaves a lock whose holder is known. Beaten while the process lives;
        removed with this lock object (or at exit)."""
        holder = HolderFile(holder_path(self.journal, self._template.token), self._template)
        try:
            holder.beat()
        except OSError as err:
            # Full, over quota, read-only: our locks then look plain to others (judged by
            # their age, the cautious way) until a later take writes the record.
            if not self._publish_failed:
                logger.warning("%s: the holder record could not be written (%s); others judge"
                               " this process's locks by their age", holder.path, err)  # fmt: skip
            self._publish_failed = True
            return
        keep_beating(holder)
        weakref.finalize(self, holder.forget)
        self._holder_file = holder

    def _break_if_dead(self) -> str | None:
        """None when the lock is gone or was just broken; else who is waited on, and why."""
        try:
            st, found = lock_record(self.path)
        except FileNotFoundError:
            return None  # released meanwhile (a holder's lock lives for milliseconds)
        if found is not None and found.record.token == self._template.token:
            return self._remove_own_leftover(st)
        if found is not None:
            record = found.record
            if same_host(record):
                judged = judge_record(record, found.beat_mtime, found.beat_mtime)
                if judged.liveness is not Liveness.DEAD:
                    return f"held by {record.who}: {judged.why}."
        elif time.time() - max(st.st_mtime, st.st_ctime) < self.grace_period:
            # ctime too: an NFSv3 exclusive create shows the client's verifier (a 1970s date)
            # as the new file's mtime until its follow-up SETATTR; the server sets the ctime.
            return "held by a plain Optuna worker (no holder record) for a moment."
        report = self._judge()
        if report is None:
            return None
        if report.verdict is not Verdict.ORPHANED:
            return report.judgement.reason
        return None if self._break(report) else report.judgement.reason

    def _remove_own_leftover(self, st: os.stat_result) -> str | None:
        """A lock naming this very lock object, which does not hold it: a release put it back
        (it could not prove the file its own, or a frozen holder's release moved it aside and
        back in a race). No other process makes a link with this token, and no thread of this
        one is taking it (`_taking`), so it is removed, if it is still that file; otherwise
        every waiter, this one included, would wait on a live process forever."""
        with self._taking:
            if self._held is not None:
                return "held by another thread of this process for a moment."
            aside = doctor_break_name(self.path)
            removal = remove_if(self.path, aside, is_file(identity(st)))
        if removal is Removal.REMOVED:
            logger.warning("removed %s: left by this process, which no longer held it",
                           self.path)  # fmt: skip
        return None  # removed, gone, or another lock now: try again at once

    def _judge(self) -> LockReport | None:
        """The doctor's own judgement of the lock, with this lock's grace period as the age
        after which a lock without a visible holder is orphaned."""
        from ..locks.observe import Observer
        from ..locks.scan import judge_all, survey_for

        observer = Observer()
        observation = observer.observe_lock(
            LockCandidate(path=self.path, journal=self.journal, root=self.path)
        )
        if observation is None:
            return None
        (observation,) = observer.watch_stale([observation])
        thresholds = Thresholds(min_age=self.grace_period, shared_min_age=self.grace_period)
        (report,) = judge_all([observation], survey_for([observation]), thresholds)
        return report

    def _break(self, report: LockReport) -> bool:
        from ..locks.clean import break_lock

        outcome = break_lock(report)
        if outcome.outcome is OutcomeKind.REMOVED:
            logger.warning("broke %s: %s", self.path, report.judgement.reason)
            return True
        return outcome.outcome is OutcomeKind.GONE

    # --- while held --------------------------------------------------------------------------

    def still_held(self) -> bool:
        """Fencing: is the lock at the path still the one this process made?"""
        held, record = self._held, self._record
        try:
            return held is not None and self._is_this_hold(self.path, held, record)
        except OSError:
            return False

    def _silent(self) -> bool:
        """Silent for two beats: others may have judged this holder dead (cut off, frozen)."""
        return time.monotonic() - self._beaten_at >= 2 * self.heartbeat_interval

    def _is_this_hold(self, name: str, held: Identity, record: HolderRecord | None) -> bool:
        """Is the file at `name` the lock this hold made? Its identity (device, inode, a
        symlink's mtime) says so while this holder beats: nobody breaks the lock of a holder
        that beats. A silent one's lock may have been broken and retaken, and the new lock may
        have the broken one's inode (a server's ext4 gives it to the next file at once: an
        open lock, retaken by another host, passed for the cut-off holder's own on the NFS
        bed): then the lock must also carry this hold's token."""
        try:
            if not is_file(held)(name):
                return False
        except FileNotFoundError:
            raise  # gone: `remove_if` says so
        except OSError:
            return False  # ESTALE, EIO: not provably this hold's
        if not self._silent():
            return True
        token = record.token if record is not None else self._template.token
        return lock_token(name) == token

    def may_write(self) -> bool:
        """Still the lock this process made, and beaten (or taken) within the grace period: a
        holder silent for longer may have been judged dead and its lock broken and retaken."""
        silent = time.monotonic() - self._beaten_at
        return silent < self.grace_period and self.still_held()

    def append(self, journal: str, data: bytes) -> bool:
        """Append `data` under this lock (held): False, writing nothing, when the lock may no
        longer be this process's (take it again and retry); `LockLost` when it was broken
        during the write; `JournalWriteFailed` when the write failed (a full filesystem, an I/O
        error), the journal put back to its length before the append.

        The write holds a byte-range lock on the journal: on NFSv4 the server revokes it from
        a client cut off past its lease, so that client's late write fails (EIO) instead of
        landing over what other hosts appended meanwhile. Not where such locks never reach a
        server (NFS mounted nolock): there nothing can fence."""
        if not self.may_write():
            return False
        try:
            fd, start = self._open_at_end(journal)
        except OSError as err:
            if self.still_held():
                raise
            raise self._lost(f"the journal could not be opened ({err.strerror or err})") from err
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as err:
            raise self._write_failed(fd, start, err) from err
        finally:
            _close(fd)  # the byte-range lock goes with it
        if not self.still_held():
            raise self._lost("it was gone when the write ended")
        return True

    def _open_at_end(self, journal: str) -> tuple[int, int]:
        """The journal opened as Optuna opens it ("ab"), fenced, and its length: where this
        append starts, since no other writer holds the lock."""
        fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        try:
            if self._fence:
                _lock_range(fd)
            return fd, os.fstat(fd).st_size
        except BaseException:
            _close(fd)
            raise

    def _write_failed(self, fd: int, start: int, err: OSError) -> Exception:
        """The error to raise for a failed write. Held, the journal is put back to its length
        before the append (no torn line for the next worker to glue its op onto); broken
        meanwhile, it is left alone: another holder may have appended since."""
        if not self.still_held():
            return self._lost(f"the write failed ({err.strerror or err})")
        try:
            os.ftruncate(fd, start)
            os.fsync(fd)
        except OSError as rollback:
            return JournalWriteFailed(self.journal, err, rollback_error=rollback)
        return JournalWriteFailed(self.journal, err)

    def _lost(self, what: str) -> LockLost:
        self.lost += 1
        return LockLost(
            f"{self.path} was broken while this process held it (its host cut off or frozen"
            f" past the {self.grace_period:g}s grace period), and {what}: another holder may"
            f" have written meanwhile. Check the journal: journal-doctor check {self.journal}",
            path=self.path,
            journal=self.journal,
        )

    @property
    def interval(self) -> float:
        return self.heartbeat_interval

    @property
    def last(self) -> float:
        return self._beaten_at

    def beat(self) -> None:
        """Called by the process's beating thread (`guard.heartbeat`) once an interval has
        passed since the take or the last beat: a hold lasts milliseconds, so most holds see
        no beat, and none wakes a thread (waking one twice per hold cost a third of the
        append rate)."""
        with self._beat:  # release() takes it too: never beat a lock being released
            if self._held is not None:
                self._beat_once()

    def _beat_once(self) -> None:
        """One beat; whatever goes wrong, the thread goes on (a holder that stops beating is
        judged dead by other hosts), and a holder that could not beat for its grace period
        stops writing (`may_write`). A lock found not to be its own any more is no beat:
        its holder stays silent, so its release looks twice before touching the name."""
        try:
            beaten = self._refresh()
        except Exception:  # any failure: log once, keep beating
            if not self._beat_failed:
                logger.exception("heartbeat of %s failed; retrying", self.path)
            self._beat_failed = True
            return
        self._beat_failed = False
        if beaten:
            self._beaten_at = time.monotonic()

    def _refresh(self) -> bool:
        """One beat of the mtime Optuna's own waiters watch (they stat the lock, so a symlink
        lock's is the journal's), which the doctor ages too; an open lock's record is
        rewritten inside it. False when the lock is not this hold's any more."""
        if self.kind is LockKind.SYMLINK:
            if not self.still_held():
                return False
            os.utime(self.journal)
            return True
        assert self._record is not None
        record = replace(self._record, heartbeat_at=time.time())
        fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            # Never write into another holder's lock, even one on this lock's old inode (a
            # server reuses a removed file's inode number at once): its record names its hold.
            if identity(os.fstat(fd)) != self._held or not _names(fd, record.token):
                return False
            data = record.to_json()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        self._record = record
        return True

    # --- release -----------------------------------------------------------------------------

    def release(self) -> None:
        with self._taking:  # until removed, not a leftover to `_remove_own_leftover`
            with self._beat:
                held, record = self._held, self._record
                self._held = self._record = None
            if held is None:
                return
            # Optuna's release (renamed aside, unlinked), of this process's own lock only: one
            # broken while we were cut off or frozen, and taken by another, is left untouched.
            removal = remove_if(self.path, release_name(self.path), self._mine(held, record))
        if removal is not Removal.REMOVED:
            self.lost += 1
            logger.warning("%s: not released, it is not the lock this process made (%s); it"
                           " was broken while this process held it", self.path,
                           removal.value)  # fmt: skip

    def _mine(self, held: Identity, record: HolderRecord | None) -> Callable[[str], bool]:
        """`remove_if`'s check for the release: this hold's lock (`_is_this_hold`). A silent
        holder changes the directory first, so that an NFS client asks the server for the
        name instead of trusting the entry it kept."""
        if self._silent():
            filesystem_now(self.directory)  # a file made and removed there
        return lambda name: self._is_this_hold(name, held, record)


_LOCKS: weakref.WeakSet[GuardedLock] = weakref.WeakSet()


def _restart_in_child() -> None:
    """A forked child is another process: it holds none of its parent's locks, and its locks
    need a record of their own (the parent's names the parent, which may die first)."""
    for lock in list(_LOCKS):
        lock._start()


os.register_at_fork(after_in_child=_restart_in_child)


def _pause(backoff: float) -> float:
    """Sleep about `backoff` seconds (jittered, as Optuna's waiters do); the next backoff."""
    time.sleep(backoff * random.uniform(0.5, 1.0))
    return min(backoff * 2, _MAX_BACKOFF)


def _names(fd: int, token: str) -> bool:
    """Does the open lock's record, read through `fd`, carry `token`?"""
    record = parse(os.pread(fd, MAX_RECORD, 0))
    return record is not None and record.token == token


def _close(fd: int) -> None:
    """Close after the fsync answered: an error then (NFS reports a failed flush at close)
    changes nothing the fsync did not already say, and must not hide the error in flight."""
    with contextlib.suppress(OSError):
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Every byte, or the error: a filesystem filling up takes part of a write, then refuses."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _lock_range(fd: int) -> None:
    """A POSIX byte-range lock on the whole journal for one append; released at close. Plain
    Optuna workers take none, and the guarded lock already excludes other guarded holders, so
    it is free but for a holder whose lock was broken while its write was stalled: then it
    waits (on NFSv4, until the server revokes the stalled client's lock at its lease's end).

    Asked without blocking, and again after a pause that grows to a quarter second: an NFSv4
    client asks the server again for a blocked lock only after a back-off that doubles to 30 s,
    so a conflict of a few seconds (the reclaims after a server restart) held a guarded worker
    34 s on the NFS bed, where plain workers went on at once."""
    pause = 0.001
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
