"""The data that flows between the stages: discover -> observe -> judge -> act/render.

NamedTuple rather than frozen dataclasses: a frozen dataclass costs ~0.5 ms to define and this
module defines a dozen on every start of `journal-doctor scan`, whose start-up is a measured goal.

Everything here is an immutable record (NamedTuple) or an enum, so a test can build any
situation (a lock on NFS, a holder in disk-sleep, an uninspectable owner) without a filesystem or
a process.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol.record import HolderRecord, RecordJudgement


class LockKind(str, enum.Enum):
    """What stands at `<journal>.lock`."""

    SYMLINK = "symlink"  # JournalFileSymlinkLock (Optuna's default)
    FILE = "file"  # JournalFileOpenLock: an empty file made with O_EXCL
    OTHER = "other"  # a directory, FIFO, socket, ...: not something Optuna makes


class LeftoverOrigin(str, enum.Enum):
    """Who left a renamed lock behind: Optuna's release or the doctor's break, cut short."""

    OPTUNA_RELEASE = "optuna-release"  # <J>.lock<uuid>.rename: a release cut short
    DOCTOR_BREAK = "doctor-break"  # <J>.lock.journal-doctor-<hex>.break: our own break cut short


class TailHealth(str, enum.Enum):
    """A cheap look at a journal's last lines (`journal.probe`); `check` reads the whole file."""

    OK = "ok"
    EMPTY = "empty"
    TORN_TAIL = "torn-tail"  # bytes after the last newline
    NUL_TAIL = "nul-tail"  # NUL bytes near the end (a power loss)
    BAD_TAIL = "bad-tail"  # a last line that is not a sound op
    MISSING = "missing"
    UNREADABLE = "unreadable"
    NOT_A_FILE = "not-a-file"

    @property
    def hurts(self) -> bool:
        """Will the next worker (or every load) fail on a journal in this state?"""
        return self in (TailHealth.TORN_TAIL, TailHealth.NUL_TAIL, TailHealth.BAD_TAIL)


class Prognosis(str, enum.Enum):
    """What Optuna will do with a journal."""

    LOADS = "loads"
    NEXT_WORKER_CRASHES = "next-worker-crashes"
    EVERY_LOAD_FAILS = "every-load-fails"


class Blindness(str, enum.Enum):
    """Why this host cannot see every process that could hold a lock."""

    NETWORK_FS = "network-filesystem"  # holders on other hosts
    EXPORTED = "exported"  # this host serves the directory (NFS, Samba, ganesha)
    CONTAINER = "container"  # a pid namespace that is not the initial one
    HIDDEN_PROCESSES = "hidden-processes"  # /proc mounted with hidepid
    SHARED = "shared"  # --shared: the user says other hosts use this path
    NO_CLOCK = "no-clock"  # the filesystem's clock could not be read: a lock's age is unknown


# Blind spots that hide processes on other hosts: then this host's boot time proves nothing.
OTHER_HOSTS = (Blindness.NETWORK_FS, Blindness.EXPORTED, Blindness.SHARED)
# Where other hosts' kernels set a lock's times: age it on the filesystem's clock, not this
# host's (hosts' clocks may disagree by minutes), and by its ctime too (an NFSv3 exclusive
# create shows the client's verifier, a 1970s date, as the mtime until its follow-up SETATTR).
SERVER_TIMES = (Blindness.NETWORK_FS, Blindness.EXPORTED)


class Verdict(str, enum.Enum):
    """What may be done with a lock or leftover: only `ORPHANED` is ever removed."""

    ACTIVE = "active"
    STUCK = "stuck"
    ORPHANED = "orphaned"
    RECENT = "recent"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class Identity:
    """What makes a lock the very file that was judged (the break protocol compares these)."""

    device: int
    inode: int
    mtime_ns: int
    kind: LockKind
    target: str | None  # symlink target as stored, None for other kinds


@dataclass(frozen=True, kw_only=True)
class Holder:
    """A live process with the journal open. Writers hold the lock; readers are only workers."""

    pid: int
    name: str
    user: str
    status: str  # psutil's words: running, sleeping, disk-sleep, stopped, tracing-stop, ...
    started: float  # epoch seconds (the process start time: with the pid, an identity)
    cmdline: str
    writing: bool

    @property
    def stopped(self) -> bool:
        return self.status in ("stopped", "tracing-stop")


@dataclass(frozen=True, kw_only=True)
class HolderSurvey:
    """One pass over the process table, serving every lock of a scan."""

    holders_by_journal: Mapping[tuple[int, int], tuple[Holder, ...]] = field(default_factory=dict)
    # uid -> number of that user's live processes whose open files could not be read.
    uninspectable_by_uid: Mapping[int, int] = field(default_factory=dict)
    processes_examined: int = 0

    def holders_of(self, journal_key: tuple[int, int] | None) -> tuple[Holder, ...]:
        if journal_key is None:
            return ()
        return self.holders_by_journal.get(journal_key, ())


@dataclass(frozen=True, kw_only=True)
class JournalState:
    exists: bool
    size: int | None = None
    mtime: float | None = None
    device: int | None = None
    inode: int | None = None
    health: TailHealth = TailHealth.MISSING
    prognosis: Prognosis = Prognosis.LOADS
    looks_like_journal: bool = False  # empty, or its first line begins with an Optuna op
    alias: str | None = None  # the name a symlinked journal's fd shows in /proc

    @property
    def key(self) -> tuple[int, int] | None:
        if self.device is None or self.inode is None:
            return None
        return (self.device, self.inode)


@dataclass(frozen=True, kw_only=True)
class Filesystem:
    type: str
    network: bool


@dataclass(frozen=True, kw_only=True)
class Unseen:
    """One reason holders may exist where this host cannot look, as a sentence for the reason."""

    blindness: Blindness
    sentence: str


@dataclass(frozen=True, kw_only=True)
class LockObservation:
    """Everything seen of one lock, before any judgement."""

    path: str
    journal: str
    root: str  # the scanned PATH that found it (paths are shown relative to it)
    identity: Identity
    age_seconds: float
    owner_uid: int
    owner: str
    filesystem: Filesystem
    predates_boot: bool
    dangling: bool
    resolved_target: str | None
    journal_state: JournalState
    directory_key: tuple[int, int]
    # What this host cannot see of this lock's possible holders; empty when it sees them all.
    unseen: tuple[Unseen, ...] = ()
    # Why the lock itself could not be read (readlink/lstat failed): judged unknown, never
    # dropped (an absolute symlink through sshfs is EPERM, and Optuna's waiters spin on it).
    unreadable: str | None = None
    # The holder record of a guarded lock (journal_doctor.storage), and what it proves.
    record: HolderRecord | None = None
    record_judgement: RecordJudgement | None = None


@dataclass(frozen=True, kw_only=True)
class JournalReport:
    """A journal found by the scan whose state will hurt the next worker."""

    path: str
    root: str
    health: TailHealth
    prognosis: Prognosis


MIN_AGE = 5.0  # seconds: a lock younger than this may belong to a write in flight
SHARED_MIN_AGE = 30.0  # Optuna's own grace period: the same where holders are invisible


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    min_age: float = MIN_AGE
    shared_min_age: float = SHARED_MIN_AGE
    shared: bool = False  # --shared: every path as if other hosts used it


@dataclass(frozen=True, kw_only=True)
class Judgement:
    verdict: Verdict
    reason: str
    # True when the verdict can change by itself as time passes (a write in flight, a lock too
    # young to judge): `clean --wait` waits for these.
    transient: bool = False


@dataclass(frozen=True, kw_only=True)
class LockReport:
    observation: LockObservation
    holders: tuple[Holder, ...]  # writing: they hold the lock
    readers: tuple[Holder, ...]  # reading without the lock: live workers of the journal
    judgement: Judgement

    @property
    def path(self) -> str:
        return self.observation.path

    @property
    def verdict(self) -> Verdict:
        return self.judgement.verdict


@dataclass(frozen=True, kw_only=True)
class LeftoverReport:
    path: str
    journal: str
    root: str
    origin: LeftoverOrigin
    age_seconds: float
    device: int
    inode: int
    directory_key: tuple[int, int]
    judgement: Judgement

    @property
    def verdict(self) -> Verdict:
        return self.judgement.verdict


@dataclass(frozen=True, kw_only=True)
class ScanProblem:
    """A path the scan could not read; the scan went on without it."""

    path: str
    message: str


@dataclass(frozen=True, kw_only=True)
class ScanReport:
    roots: tuple[str, ...]
    host: str
    locks: tuple[LockReport, ...]
    leftovers: tuple[LeftoverReport, ...]
    problems: tuple[ScanProblem, ...]
    thresholds: Thresholds
    processes_examined: int
    elapsed_seconds: float
    journals: tuple[JournalReport, ...] = ()  # damaged journals, with or without a lock
    container: bool = False  # the doctor runs in a pid namespace that is not the initial one

    def needs_attention(self) -> bool:
        """True when something stands in the way of a resume (exit code 1)."""
        blocking = (Verdict.ORPHANED, Verdict.STUCK, Verdict.UNKNOWN)
        return (
            any(lock.verdict in blocking for lock in self.locks)
            or any(leftover.verdict is Verdict.ORPHANED for leftover in self.leftovers)
            or bool(self.problems)
            or bool(self.journals)
        )

    def transient(self) -> tuple[LockReport, ...]:
        return tuple(lock for lock in self.locks if lock.judgement.transient)


class OutcomeKind(str, enum.Enum):
    """What `clean` did with one artifact (or, in a plan, would do)."""

    REMOVED = "removed"
    WOULD_REMOVE = "would-remove"  # --dry-run, declined or refused
    KEPT = "kept"
    GONE = "gone"  # released by its holder (or another doctor) before the break
    CONFLICT = "conflict"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    path: str
    outcome: OutcomeKind
    detail: str
    verdict: Verdict


@dataclass(frozen=True, kw_only=True)
class CleanReport:
    scan: ScanReport
    outcomes: tuple[Outcome, ...]
    waited_seconds: float = 0.0
    wait_timed_out: bool = False

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(o.path for o in self.outcomes if o.outcome is OutcomeKind.REMOVED)

    def needs_attention(self) -> bool:
        """True unless, after what was removed, nothing stands in the way of a resume."""
        unresolved = (OutcomeKind.CONFLICT, OutcomeKind.FAILED, OutcomeKind.WOULD_REMOVE)
        blocking = (Verdict.STUCK, Verdict.UNKNOWN, Verdict.ORPHANED)
        return (
            self.wait_timed_out
            or bool(self.scan.problems)
            or bool(self.scan.journals)
            or any(
                o.outcome in unresolved or (o.outcome is OutcomeKind.KEPT and o.verdict in blocking)
                for o in self.outcomes
            )
        )
