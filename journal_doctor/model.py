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
from typing import NamedTuple


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


class Identity(NamedTuple):
    """What makes a lock the very file that was judged (the break protocol compares these)."""

    device: int
    inode: int
    mtime_ns: int
    kind: LockKind
    target: str | None  # symlink target as stored, None for other kinds


class Holder(NamedTuple):
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


class HolderSurvey(NamedTuple):
    """One pass over the process table, serving every lock of a scan."""

    # Read-only after construction, so a shared empty default is safe.
    holders_by_journal: Mapping[tuple[int, int], tuple[Holder, ...]] = {}
    # uid -> number of that user's live processes whose open files could not be read.
    uninspectable_by_uid: Mapping[int, int] = {}
    processes_examined: int = 0

    def holders_of(self, journal_key: tuple[int, int] | None) -> tuple[Holder, ...]:
        if journal_key is None:
            return ()
        return self.holders_by_journal.get(journal_key, ())


class JournalState(NamedTuple):
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


class Filesystem(NamedTuple):
    type: str
    mountpoint: str
    network: bool


class LockObservation(NamedTuple):
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


class Thresholds(NamedTuple):
    min_age: float = 5.0
    shared_min_age: float = 30.0


class Judgement(NamedTuple):
    verdict: Verdict
    reason: str
    # True when the verdict can change by itself as time passes (a write in flight, a lock too
    # young to judge): `clean --wait` waits for these.
    transient: bool = False


class LockReport(NamedTuple):
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


class LeftoverReport(NamedTuple):
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


class ScanProblem(NamedTuple):
    """A path the scan could not read; the scan went on without it."""

    path: str
    message: str


class ScanReport(NamedTuple):
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


class Outcome(NamedTuple):
    path: str
    kind: OutcomeKind
    detail: str
    verdict: Verdict


class CleanReport(NamedTuple):
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
