"""The holder record: who holds a guarded lock (or runs a trial), in a form other hosts and
other tools read. The format is documented in docs/guarded-storage.md ("The holder record")
and versioned.

Where it lives:
- an open (O_EXCL) lock: inside the lock file itself, so it can only describe that very file;
- a symlink lock: in `<journal>.heartbeats/holder-<token>`, one file per process, written once
  when the process first takes the lock and beaten (rewritten, renamed into place) by its
  beating thread; the process removes it when it ends. The lock names it: the symlink's target
  is the journal's bare name behind 64 `./` or `.//` steps, one per bit of the token
  (`link_target`), which resolves to the journal from any working directory, as Optuna's
  waiters need, and carries the token in the one thing a holder writes per hold: the link
  itself. Nothing else is written per hold (on NFS a record written at every take cost a
  synchronous WRITE per append), and no time is compared to bind the two: the record describes
  the process whose token the link carries. Nobody keeps a record file open: an NFS client
  keeps serving its cached pages of a file a local process holds open for writing, and
  close-to-open consistency covers only what is opened after it was closed. The lock's
  heartbeat is the later of the journal's mtime, which the holder touches while it holds the
  lock (what Optuna's own waiters watch), and the lock's own.
- heartbeats of workers and trials: `<journal>.heartbeats/` (`guard.heartbeat`).

Nothing here imports optuna or the lock modules: `scan` reads records on its fast path.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from functools import cache
from typing import Any, TypeVar

from ..fsio import open_nonblocking

FORMAT = "journal-doctor/holder-record/2"
# 1: a symlink lock's record was `<journal>.lock.holder`, bound by the lock's mtime. Worker and
# trial heartbeats are the same in both: written by 1 or 2, they are read alike.
_READABLE = (FORMAT, "journal-doctor/holder-record/1")
HEARTBEATS_SUFFIX = ".heartbeats"  # <journal>.heartbeats/<trial id>
HOLDER_PREFIX = "holder-"  # <journal>.heartbeats/holder-<token>: a symlink lock's holder
MAX_RECORD = 4096
TOKEN_BITS = 64  # a process's token in its symlink locks' target: 16 hex digits
_LINK = re.compile(rf"((?:\./{{1,2}}){{{TOKEN_BITS}}})([^/]+)")


K = TypeVar("K")


@dataclass(frozen=True, kw_only=True)
class HolderRecord:
    host: str
    boot_id: str  # /proc/sys/kernel/random/boot_id: one per boot of one kernel
    pid_namespace: int  # inode of /proc/self/ns/pid: pids compare only within one namespace
    pid: int
    name: str  # the process name, as ps shows it
    started: float  # the process's start time (epoch seconds), so a reused pid is told apart
    start_ticks: int  # the same in clock ticks since boot (/proc/<pid>/stat field 22): exact
    user: str
    acquired_at: float  # holder's clock (informational: judges use the filesystem's clock)
    heartbeat_at: float  # holder's clock at the last beat
    heartbeat_interval: float
    grace_period: float
    token: str  # this acquisition (open locks), this process (symlink locks, worker beats)

    def to_json(self) -> bytes:
        """One JSON line. Written at every hold of an open lock: the fields are read directly
        (`asdict` deep-copies, 13x slower)."""
        document: dict[str, Any] = {"format": FORMAT}
        document.update((name, getattr(self, name)) for name in _RECORD_FIELDS)
        # json, not orjson: a process name may not be UTF-8 (surrogate escapes), which json
        # writes as \udcXX and orjson refuses.
        return json.dumps(document, separators=(",", ":")).encode() + b"\n"

    @property
    def who(self) -> str:
        """`hostA:1234 (python)`: how every message names a guarded holder."""
        return f"{self.host}:{self.pid} ({self.name})"


_RECORD_FIELDS = tuple(f.name for f in fields(HolderRecord))


def parse(data: bytes) -> HolderRecord | None:
    """A record from its bytes; None for anything else (a plain lock, a torn write)."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("format") not in _READABLE:
            return None
        known = {field: document[field] for field in _RECORD_FIELDS if field in document}
        return HolderRecord(**known)
    except (ValueError, KeyError, TypeError):
        return None


def heartbeat_dir(journal: str) -> str:
    return journal + HEARTBEATS_SUFFIX


def holder_name(token: str) -> str:
    """The name, in the heartbeats directory, of the record of the process whose symlink locks
    carry `token`."""
    return HOLDER_PREFIX + token


def holder_path(journal: str, token: str) -> str:
    return os.path.join(heartbeat_dir(journal), holder_name(token))


def new_token() -> str:
    return os.urandom(TOKEN_BITS // 8).hex()


def link_target(journal_name: str, token: str) -> str:
    """A symlink lock's target: the journal's bare name, behind one `./` (a 0) or `.//` (a 1)
    per bit of `token`. It resolves to the journal beside the lock, as Optuna's waiters need
    (they stat the lock), and never dangles while the journal is there."""
    bits = format(int(token, 16), f"0{TOKEN_BITS}b")
    return "".join(".//" if bit == "1" else "./" for bit in bits) + journal_name


def target_token(target: str | None) -> str | None:
    """The token a guarded holder's `link_target` carries; None for any other target (a plain
    Optuna lock's: the journal's name as its worker gave it)."""
    match = _LINK.fullmatch(target) if target else None
    if match is None:
        return None
    bits = "".join("1" if step == ".//" else "0" for step in re.findall(r"\./{1,2}", match[1]))
    return format(int(bits, 2), f"0{TOKEN_BITS // 4}x")


def read_bytes(path: str, limit: int = MAX_RECORD) -> tuple[bytes, os.stat_result] | None:
    """The content and the fstat of a small regular file, never following a symlink."""
    try:
        fd = open_nonblocking(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        return os.read(fd, limit), st
    except OSError:
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True, kw_only=True)
class Found:
    record: HolderRecord
    beat_mtime: float  # the last heartbeat, on the filesystem's clock


def read_record(lock: str, lock_st: os.stat_result, target: str | None) -> Found | None:
    """The record of the lock whose lstat is `lock_st`, if it has one that describes it."""
    if stat.S_ISREG(lock_st.st_mode):
        if lock_st.st_size == 0:
            return None  # a plain JournalFileOpenLock (or one not yet written)
        read = read_bytes(lock)
        record = parse(read[0]) if read else None
        return (
            Found(record=record, beat_mtime=beat_time(lock, read[1])) if record and read else None
        )
    token = target_token(target) if stat.S_ISLNK(lock_st.st_mode) else None
    if token is None:
        return None  # a plain Optuna lock
    journal = lock[: -len(".lock")]
    read = read_bytes(holder_path(journal, token))
    record = parse(read[0]) if read else None
    if record is None or record.token != token:
        return None
    # The heartbeat is the journal's mtime, which the holder touches while it holds the lock;
    # and the lock's own creation, which proves the holder alive then: a lock just taken on a
    # journal last written an hour ago is not an hour silent (another host broke such a lock
    # 75 ms after it was taken, on the NFS bed).
    beat = fresh_mtime(journal)
    return (
        Found(record=record, beat_mtime=max(beat, lock_st.st_mtime)) if beat is not None else None
    )


def lock_token(lock: str) -> str | None:
    """The token of the hold that made `lock`: a symlink's carries it, an open lock's record
    inside names it; None for a plain Optuna lock, or one gone or unreadable."""
    try:
        st = os.lstat(lock)
        if stat.S_ISLNK(st.st_mode):
            return target_token(os.readlink(lock))
    except OSError:
        return None
    read = read_bytes(lock)
    record = parse(read[0]) if read else None
    return record.token if record else None


def lock_record(lock: str) -> tuple[os.stat_result, Found | None]:
    """A lock's lstat and the record that describes it, if any (a symlink's is named by its
    target). Raises OSError: FileNotFoundError once the lock is released."""
    st = os.lstat(lock)
    target = os.readlink(lock) if stat.S_ISLNK(st.st_mode) else None
    return st, read_record(lock, st, target)


def fresh_mtime(path: str) -> float | None:
    """The mtime as the server has it now: through sshfs a stat() answers from a cache of up
    to 20 s (measured on the two-host bed), and an open() revalidates it (NFS promises the
    same: close-to-open consistency). Opened twice, the later answer kept: on NFSv4 the first
    open of a file another client holds delegated makes the server recall it, and may still
    answer with the attributes from before that client's last changes (measured on the NFS
    bed: 11.7 s old once, the holder's clock 5 minutes behind); the second sees them."""
    seen = [mtime for mtime in (_open_mtime(path), _open_mtime(path)) if mtime is not None]
    return max(seen) if seen else None


def _open_mtime(path: str) -> float | None:
    try:
        fd = open_nonblocking(path)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)


def beat_time(path: str, st: os.stat_result) -> float:
    """A heartbeat file's beat: its mtime as just read (`st`), or later on a second look."""
    return max(st.st_mtime, fresh_mtime(path) or 0.0)


# --- who this process is ------------------------------------------------------------------


@cache
def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


@cache
def pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


@cache
def hostname() -> str:
    # os.uname() needs no import of socket (a few ms of every start-up).
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket  # pragma: no cover - Windows

    return socket.gethostname()


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, ValueError, IndexError):
        return None


def this_process(*, token: str, interval: float, grace: float) -> HolderRecord:
    now = time.time()
    me = os.getpid()
    name, started, user = _me(me)
    return HolderRecord(
        host=hostname(),
        boot_id=boot_id(),
        pid_namespace=pid_namespace(),
        pid=me,
        name=name,
        started=started,
        start_ticks=start_ticks(me) or 0,
        user=user,
        acquired_at=now,
        heartbeat_at=now,
        heartbeat_interval=interval,
        grace_period=grace,
        token=token,
    )


@cache
def _me(pid: int) -> tuple[str, float, str]:  # by pid: a forked child is another process
    import psutil

    me = psutil.Process(pid)
    return me.name(), me.create_time(), me.username()


# --- is the holder alive? -----------------------------------------------------------------


class Liveness(str, enum.Enum):
    """What a holder record proves of its process (`RecordJudgement.liveness`)."""

    ALIVE = "alive"  # same host, same pid namespace: the very process runs
    STOPPED = "stopped"  # same: it is stopped (T/t): it holds, and cannot finish
    DEAD = "dead"  # proven: its pid is gone or reused, or the host rebooted
    BEATING = "beating"  # elsewhere: its heartbeat is younger than its grace period
    STALE = "stale"  # elsewhere: its heartbeat is older than its grace period
    UNKNOWN = "unknown"  # cannot tell: no filesystem clock, a caching client, a hidden process


@dataclass(frozen=True, kw_only=True)
class RecordJudgement:
    liveness: Liveness
    heartbeat_age: float  # on the filesystem's clock
    why: str


def same_host(record: HolderRecord) -> bool:
    """Can this process look the holder up in /proc? Same kernel boot, same pid namespace."""
    return (
        bool(record.boot_id)
        and record.boot_id == boot_id()
        and (record.pid_namespace == pid_namespace())
    )


def judge_record(
    record: HolderRecord,
    beat_mtime: float,
    fs_now: float | None,
    local: bool = False,
    caching: str = "",
) -> RecordJudgement:
    """Alive or dead, from /proc on the holder's own host, else from its heartbeat's age
    measured on the filesystem's clock (`fs_now`): robust to skew between hosts' clocks.
    Without that clock (None) another host's holder cannot be judged: UNKNOWN, never stale.

    `local`: the lock is on a filesystem only this machine writes (not a network filesystem,
    not exported). Then a record of another boot was written before this machine rebooted.
    `caching`: the type of a FUSE network filesystem (sshfs) it is seen through, whose own
    caches hide other hosts' changes: there another host's holder is never judged."""
    age = max(0.0, (time.time() if fs_now is None else fs_now) - beat_mtime)
    if same_host(record):
        liveness, why = _on_this_host(record)
    elif caching:
        liveness, why = Liveness.UNKNOWN, _through_cache(caching, record)
    elif local and record.boot_id and boot_id() and record.boot_id != boot_id():
        liveness, why = Liveness.DEAD, "this machine rebooted since it was taken"
    elif fs_now is None:
        liveness, why = (
            Liveness.UNKNOWN,
            (
                "its heartbeat's age cannot be told: the filesystem's clock could not be read"
                " (nothing could be created there: full, over quota or read-only). To decide:"
                " free some space there, or run journal-doctor where it can create a file"
            ),
        )
    elif age > record.grace_period:
        liveness = Liveness.STALE
        why = f"its heartbeat is {age:.1f}s old (> {record.grace_period:g}s)"
    else:
        liveness, why = Liveness.BEATING, f"its heartbeat is {age:.1f}s old"
    return RecordJudgement(liveness=liveness, heartbeat_age=age, why=why)


def _on_this_host(record: HolderRecord) -> tuple[Liveness, str]:
    """/proc decides: the process gone, reused, exited (a zombie holds nothing; nobody may
    ever reap it), stopped, or alive; unless /proc hides it (hidepid), which a signal tells."""
    ticks = start_ticks(record.pid)
    if ticks is None:
        return _unreadable(record.pid)
    if record.start_ticks and ticks != record.start_ticks:
        return Liveness.DEAD, f"pid {record.pid} is another process now"
    state = process_state(record.pid)
    if state in ("Z", "X", None):
        return Liveness.DEAD, f"process {record.pid} has exited"
    if state in ("T", "t"):
        return Liveness.STOPPED, f"process {record.pid} is stopped"
    return Liveness.ALIVE, f"process {record.pid} is alive"


def _unreadable(pid: int) -> tuple[Liveness, str]:
    """/proc/<pid>/stat could not be read: the process is gone, or /proc hides it from this
    user (hidepid=1 or 2: other users' processes). Signal 0 is not hidden: ESRCH is gone;
    EPERM is a process of another user, which may be a reused pid: never proof of death."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Liveness.DEAD, f"process {pid} is gone"
    except PermissionError:
        pass
    return Liveness.UNKNOWN, (
        f"process {pid} exists but /proc hides it from this user (hidepid), so it cannot be"
        " told from a reused pid. To decide: run journal-doctor as root or as its owner"
    )


def caching_filesystem(fs_type: str, network: bool) -> str:
    """The type of a network filesystem whose client caches what it serves in user space (any
    FUSE one: sshfs keeps attributes, names and, through them, pages for 20 s by default, and
    a rename carries the cached attributes to the new name), else "". Measured on the two-host
    bed: seen through sshfs, a holder taking and releasing the lock hundreds of times looked
    still for 21 s, and a waiter there broke a live lock."""
    return fs_type if network and fs_type.startswith("fuse") else ""


def _through_cache(caching: str, record: HolderRecord) -> str:
    return (
        f"it is seen through {caching}, whose caches hide other hosts' changes (sshfs: 20 s by"
        f" default), so its heartbeat proves nothing here. To decide: run journal-doctor where"
        f" the directory is local (the server) or on {record.host}"
    )


def watch_deadline(record: HolderRecord, judged: RecordJudgement, first_look: float) -> float:
    """When (monotonic) a stale-looking heartbeat of another host may be believed: once it has
    stayed still for `watch_seconds(record)` while this process watched, on its own clock. 0.0
    when there is nothing to watch. An age read off timestamps alone is not enough there: an
    NFSv4.2 client holding a delegation with delegated timestamps (Linux >= 6.x) stamps the
    holder's beats with its own clock, and one running behind the server's leaves the journal's
    mtime still, seconds old, until another host's look recalls the delegation (measured on the
    NFS bed: a live holder's lock broken at 4.5 s with a 4 s grace, its client 5 minutes
    behind; after the look, its next beat showed within a second)."""
    if judged.liveness is not Liveness.STALE or same_host(record):
        return 0.0
    return first_look + watch_seconds(record)


def watch_seconds(record: HolderRecord) -> float:
    """Two of the holder's beats (at least 1 s), within its grace period: our first look
    recalls a delegation, and a live holder's next beat then shows. The timestamps must say
    stale as well, so a holder silent for its grace period stays dead however short this is."""
    return min(record.grace_period, max(2 * record.heartbeat_interval, 1.0))


def after_watch(
    record: HolderRecord, judged: RecordJudgement, first_beat: float, beat: float | None
) -> RecordJudgement:
    """The judgement of a stale-looking heartbeat, read again after its watch: one that moved
    meanwhile is alive, whatever its timestamps' age."""
    if beat is not None and beat != first_beat:
        return RecordJudgement(liveness=Liveness.BEATING, heartbeat_age=judged.heartbeat_age,
                               why="its heartbeat moved while watched (its timestamps lag: a"
                               " delegation, a cache or a clock)")  # fmt: skip
    watched = f"unchanged while watched for {watch_seconds(record):g}s"
    return replace(judged, why=f"{judged.why}, {watched}")


@dataclass(frozen=True, kw_only=True)
class Seen:
    """One heartbeat as first read: what it proved, and when (monotonic, after the read)."""

    record: HolderRecord
    judged: RecordJudgement
    beat: float
    at: float


def to_watch(seen: Mapping[K, Seen]) -> list[K]:
    """The beats among these that must be watched before they are believed."""
    return [key for key, s in seen.items() if watch_deadline(s.record, s.judged, s.at)]


def watch_all(
    seen: Mapping[K, Seen], beat_now: Callable[[K], float | None]
) -> dict[K, RecordJudgement]:
    """Every judgement, once each stale-looking beat of another host among them has been
    watched (one wait for all) and read again with `beat_now` (None: gone or replaced)."""
    deadlines = {key: watch_deadline(s.record, s.judged, s.at) for key, s in seen.items()}
    due = max(deadlines.values(), default=0.0)
    remaining = due - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    return {key: after_watch(s.record, s.judged, s.beat, beat_now(key)) if deadlines[key]
            else s.judged for key, s in seen.items()}  # fmt: skip


def filesystem_now(directory: str) -> float | None:
    """The filesystem's own clock: the mtime of a file made there just now. None where nothing
    can be created (full, over quota, read-only): this host's clock may disagree with the
    other hosts' by minutes, so their heartbeats cannot be aged, and nothing is judged stale."""
    probe = os.path.join(directory, f".journal-doctor-clock-{os.getpid()}-{time.monotonic_ns()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
