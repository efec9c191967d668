"""The data that flows between the stages: discover -> observe -> judge -> act/render.

Records that are never compared are declared eq=False: each generated method costs start-up
time, and `journal-doctor scan` is meant to start fast.

Everything here is a frozen dataclass or an enum, so a test can build any situation (a lock on
NFS, a holder in disk-sleep, an uninspectable owner) without a filesystem or a process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class LockKind(str, enum.Enum):
    """What stands at `<journal>.lock`."""

    SYMLINK = "symlink"  # JournalFileSymlinkLock (Optuna's default)
    FILE = "file"  # JournalFileOpenLock: an empty file made with O_EXCL
    OTHER = "other"  # a directory, FIFO, socket, ...: not something Optuna makes


class LeftoverOrigin(str, enum.Enum):
    OPTUNA_RELEASE = "optuna-release"  # <J>.lock<uuid>.rename: a release cut short
    DOCTOR_BREAK = "doctor-break"  # <J>.lock.journal-doctor-<hex>.break: our own break cut short


class Verdict(str, enum.Enum):
    ACTIVE = "active"
    STUCK = "stuck"
    ORPHANED = "orphaned"
    RECENT = "recent"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Identity:
    """What makes a lock the very file that was judged (the break protocol compares these)."""

    device: int
    inode: int
    mtime_ns: int
    kind: LockKind
    target: str | None  # symlink target as stored, None for other kinds


@dataclass(frozen=True)
class Holder:
    """A live process with the journal open. Writers hold the lock; readers are only workers."""

    pid: int
    name: str
    user: str
    uid: int
    status: str  # psutil's words: running, sleeping, disk-sleep, stopped, tracing-stop, ...
    started: float  # epoch seconds (the process start time: with the pid, an identity)
    cmdline: str
    writing: bool

    @property
    def stopped(self) -> bool:
        return self.status in ("stopped", "tracing-stop")


@dataclass(frozen=True, eq=False)
class HolderSurvey:
    """One pass over the process table, serving every lock of a scan."""

    holders_by_journal: dict[tuple[int, int], tuple[Holder, ...]] = field(default_factory=dict)
    # uid -> number of that user's live processes whose open files could not be read.
    uninspectable_by_uid: dict[int, int] = field(default_factory=dict)
    processes_examined: int = 0

    def holders_of(self, journal_key: tuple[int, int] | None) -> tuple[Holder, ...]:
        if journal_key is None:
            return ()
        return self.holders_by_journal.get(journal_key, ())


@dataclass(frozen=True)
class JournalState:
    exists: bool
    size: int | None = None
    mtime: float | None = None
    device: int | None = None
    inode: int | None = None
    is_regular: bool = False
    # A cheap look at the journal's last 64 KiB (`integrity.health_of_tail`): ok, empty,
    # torn-tail, nul-tail, bad-tail, missing, unreadable. `check` reads the whole file.
    health: str = "missing"
    looks_like_journal: bool = False  # empty, or starts like JSON lines
    alias: str | None = None  # the name a symlinked journal's fd shows in /proc

    @property
    def key(self) -> tuple[int, int] | None:
        if self.device is None or self.inode is None:
            return None
        return (self.device, self.inode)


@dataclass(frozen=True)
class Filesystem:
    type: str
    mountpoint: str
    network: bool


@dataclass(frozen=True, eq=False)
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


@dataclass(frozen=True)
class Thresholds:
    min_age: float = 5.0
    shared_min_age: float = 30.0


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    # True when the verdict can change by itself as time passes (a write in flight, a lock too
    # young to judge): `clean --wait` waits for these.
    transient: bool = False


@dataclass(frozen=True, eq=False)
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


@dataclass(frozen=True, eq=False)
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


@dataclass(frozen=True, eq=False)
class ScanProblem:
    """A path the scan could not read; the scan went on without it."""

    path: str
    message: str


@dataclass(frozen=True, eq=False)
class ScanReport:
    roots: tuple[str, ...]
    host: str
    locks: tuple[LockReport, ...]
    leftovers: tuple[LeftoverReport, ...]
    problems: tuple[ScanProblem, ...]
    thresholds: Thresholds
    processes_examined: int
    elapsed_seconds: float

    def needs_attention(self) -> bool:
        """True when something stands in the way of a resume (exit code 1)."""
        blocking = (Verdict.ORPHANED, Verdict.STUCK, Verdict.UNKNOWN)
        return (
            any(lock.verdict in blocking for lock in self.locks)
            or any(leftover.verdict is Verdict.ORPHANED for leftover in self.leftovers)
            or bool(self.problems)
        )

    def transient(self) -> tuple[LockReport, ...]:
        return tuple(lock for lock in self.locks if lock.judgement.transient)


class OutcomeKind(str, enum.Enum):
    REMOVED = "removed"
    WOULD_REMOVE = "would-remove"  # --dry-run, declined or refused
    KEPT = "kept"
    GONE = "gone"  # released by its holder (or another doctor) before the break
    CONFLICT = "conflict"
    FAILED = "failed"


@dataclass(frozen=True, eq=False)
class Outcome:
    path: str
    kind: OutcomeKind
    detail: str
    verdict: Verdict


@dataclass(frozen=True, eq=False)
class CleanReport:
    scan: ScanReport
    outcomes: tuple[Outcome, ...]
    waited_seconds: float = 0.0
    wait_timed_out: bool = False

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(o.path for o in self.outcomes if o.kind is OutcomeKind.REMOVED)

    def needs_attention(self) -> bool:
        """True unless, after what was removed, nothing stands in the way of a resume."""
        unresolved = (OutcomeKind.CONFLICT, OutcomeKind.FAILED, OutcomeKind.WOULD_REMOVE)
        blocking = (Verdict.STUCK, Verdict.UNKNOWN, Verdict.ORPHANED)
        return (
            self.wait_timed_out
            or bool(self.scan.problems)
            or any(
                o.kind in unresolved or (o.kind is OutcomeKind.KEPT and o.verdict in blocking)
                for o in self.outcomes
            )
        )
