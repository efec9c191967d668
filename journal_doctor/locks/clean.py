"""`clean`: the scan's judgement, then the break protocol for every orphaned artifact.

Between the scan and the removal a live worker may release the lock and another may take a new
one at the same name. So each lock is re-observed and re-judged with a fresh holder survey, then
renamed to a private name in the same directory (atomic: exactly one doctor can win it), and
unlinked only if it is still the very file that was judged (device, inode, mtime, kind, symlink
target). Anything else is put back where it was and reported as a conflict. No step follows a
symlink: every call works on names relative to a directory fd with follow_symlinks=False.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Callable, Iterable
from functools import partial

from ..errors import UsageError, os_error_advice
from ..model import (
    MIN_AGE,
    SHARED_MIN_AGE,
    CleanReport,
    Identity,
    LeftoverReport,
    LockKind,
    LockReport,
    Outcome,
    OutcomeKind,
    ScanReport,
    Thresholds,
    Verdict,
)
from ..protocol.lockfile import Removal, doctor_break_name, remove_if
from ..protocol.record import MAX_RECORD, heartbeat_dir, holder_name, parse
from .discover import LockCandidate
from .observe import Observer
from .scan import PathArg, Progress, as_paths, judge_all, scan, survey_for

# Called with the plan (every artifact's intended outcome); True means go ahead.
Confirm = Callable[[ScanReport, tuple[Outcome, ...]], bool]
# Told, while --wait waits, what it waits for and how many seconds are left.
OnWait = Callable[[ScanReport, float], None]
# Test seam: called with a lock's path after it was re-judged and just before the rename.
BeforeBreak = Callable[[str], None]

_POLL_SECONDS = 0.2
_REPLACED = "Its directory was replaced since the scan; nothing removed."


def intended(artifact: LockReport | LeftoverReport) -> Outcome:
    """What clean would do to one artifact: only an `orphaned` one is ever removed."""
    removable = artifact.verdict is Verdict.ORPHANED
    kind = OutcomeKind.WOULD_REMOVE if removable else OutcomeKind.KEPT
    return Outcome(
        path=artifact.path, outcome=kind, detail=artifact.judgement.reason, verdict=artifact.verdict
    )


def plan(report: ScanReport) -> tuple[Outcome, ...]:
    """Every artifact with what clean would do to it."""
    return (*map(intended, report.locks), *map(intended, report.leftovers))


def _identity_of(st: os.stat_result, target: str | None) -> Identity:
    if stat.S_ISLNK(st.st_mode):
        kind = LockKind.SYMLINK
    elif stat.S_ISREG(st.st_mode):
        kind = LockKind.FILE
    else:
        kind = LockKind.OTHER
    return Identity(
        device=st.st_dev, inode=st.st_ino, mtime_ns=st.st_mtime_ns, kind=kind, target=target
    )


def _failure_advice(err: OSError, owner: str | None) -> str:
    advice = os_error_advice(err, owner)
    if advice == (err.strerror or str(err)):  # no better advice for this error
        return f"{advice}: remove it by hand once you have checked nothing holds it"
    return advice


class _DirectoryReplaced(Exception):
    pass


class _Directory:
    """An fd on the lock's directory, checked to be the directory that was scanned."""

    def __init__(self, path: str, expected: tuple[int, int]) -> None:
        self.fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        if (st.st_dev, st.st_ino) != expected:
            os.close(self.fd)
            raise _DirectoryReplaced

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _read_target(name: str, dir_fd: int, st: os.stat_result) -> str | None:
    return os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else None


def break_lock(judged: LockReport, before_break: BeforeBreak | None = None) -> Outcome:
    """Remove one lock judged orphaned (and re-judged just now) if it is still that lock."""
    obs = judged.observation
    path, verdict = obs.path, judged.verdict
    directory, name = os.path.split(path)
    try:
        with _Directory(directory, obs.directory_key) as dir_fd:
            if before_break is not None:
                before_break(path)
            private = doctor_break_name(name)
            removal = remove_if(name, private, _is_judged(obs.identity, dir_fd), dir_fd=dir_fd)
            if removal is Removal.REMOVED and obs.record and obs.identity.kind is LockKind.SYMLINK:
                _remove_record(os.path.basename(obs.journal), dir_fd, obs.record.token)
    except _DirectoryReplaced:
        return Outcome(path=path, outcome=OutcomeKind.CONFLICT, detail=_REPLACED, verdict=verdict)
    except FileNotFoundError as err:
        return Outcome(
            path=path,
            outcome=OutcomeKind.GONE,
            detail=f"Gone before the break ({err.strerror}).",
            verdict=verdict,
        )
    except OSError as err:
        return Outcome(
            path=path,
            outcome=OutcomeKind.FAILED,
            detail=_failure_advice(err, obs.owner),
            verdict=verdict,
        )
    kind, why = _BROKEN[removal]
    return Outcome(
        path=path,
        outcome=kind,
        detail=why.format(reason=judged.judgement.reason, private=private),
        verdict=verdict,
    )


_BROKEN = {
    Removal.REMOVED: (OutcomeKind.REMOVED, "{reason}"),
    Removal.GONE: (OutcomeKind.GONE, "Released before the break."),
    # Not the lock that was judged: a worker released it and another took a new one.
    Removal.LEFT: (
        OutcomeKind.CONFLICT,
        "Changed since it was judged (a new lock took its place); left untouched.",
    ),
    Removal.PUT_BACK: (
        OutcomeKind.CONFLICT,
        "Changed since it was judged (a new lock took its place); put back untouched.",
    ),
    Removal.DISPLACED: (
        OutcomeKind.CONFLICT,
        "Changed since it was judged and a newer lock took the name meanwhile; the one found"
        " is left at {private} for a later scan to judge.",
    ),
}


def _is_judged(identity: Identity, dir_fd: int) -> Callable[[str], bool]:
    """The very lock judged: device, inode, mtime, kind and symlink target."""

    def check(aside: str) -> bool:
        st = os.stat(aside, dir_fd=dir_fd, follow_symlinks=False)
        return _identity_of(st, _read_target(aside, dir_fd, st)) == identity

    return check


def _remove_record(journal_name: str, dir_fd: int, token: str) -> None:
    """The record of a symlink lock's holder judged dead, once its lock is broken: nothing
    else names it. Its token is in its name, so no other process writes it; a holder judged
    dead from another host that was only frozen writes it again at its next beat. Never
    through a symlink: the heartbeats directory is opened without following one."""
    try:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(heartbeat_dir(journal_name), flags, dir_fd=dir_fd)
    except OSError:
        return  # no such directory, or not one: nothing of ours to remove
    try:
        name = holder_name(token)

        def is_the_holders(aside: str) -> bool:
            record_fd = os.open(aside, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                record = parse(os.read(record_fd, MAX_RECORD))
            finally:
                os.close(record_fd)
            return record is not None and record.token == token

        remove_if(name, doctor_break_name(name), is_the_holders, dir_fd=fd)
    except OSError:
        pass  # a leftover at worst: the lock, which mattered, is gone
    finally:
        os.close(fd)


def remove_leftover(leftover: LeftoverReport, thresholds: Thresholds) -> Outcome:
    directory, name = os.path.split(leftover.path)
    verdict = leftover.verdict
    try:
        with _Directory(directory, leftover.directory_key) as dir_fd:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            age = time.time() - max(st.st_mtime, st.st_ctime)
            if (st.st_dev, st.st_ino) != (leftover.device, leftover.inode):
                return Outcome(
                    path=leftover.path,
                    outcome=OutcomeKind.CONFLICT,
                    detail="Changed since it was judged.",
                    verdict=verdict,
                )
            if age < thresholds.min_age:
                return Outcome(
                    path=leftover.path,
                    outcome=OutcomeKind.KEPT,
                    detail="Renamed again since it was judged; a release may be in progress.",
                    verdict=Verdict.RECENT,
                )
            os.unlink(name, dir_fd=dir_fd)
            return Outcome(
                path=leftover.path,
                outcome=OutcomeKind.REMOVED,
                detail=leftover.judgement.reason,
                verdict=verdict,
            )
    except _DirectoryReplaced:
        return Outcome(
            path=leftover.path, outcome=OutcomeKind.CONFLICT, detail=_REPLACED, verdict=verdict
        )
    except FileNotFoundError:
        return Outcome(
            path=leftover.path, outcome=OutcomeKind.GONE, detail="Already gone.", verdict=verdict
        )
    except OSError as err:
        return Outcome(
            path=leftover.path,
            outcome=OutcomeKind.FAILED,
            detail=_failure_advice(err, None),
            verdict=verdict,
        )


def rejudge(locks: Iterable[LockReport], thresholds: Thresholds) -> dict[str, LockReport | None]:
    """Observe and judge these locks again, with a fresh holder survey (one pass for all)."""
    observer = Observer(shared=thresholds.shared)
    fresh: dict[str, LockReport | None] = {}
    observations = []
    for lock in locks:
        obs = lock.observation
        again = observer.observe_lock(
            LockCandidate(path=obs.path, journal=obs.journal, root=obs.root)
        )
        fresh[obs.path] = None
        if again is not None:
            observations.append(again)
    observations = observer.watch_stale(observations)
    for report in judge_all(observations, survey_for(observations), thresholds):
        fresh[report.path] = report
    return fresh


def execute(report: ScanReport, before_break: BeforeBreak | None = None) -> tuple[Outcome, ...]:
    """Carry out the plan: break every orphaned lock, remove every orphaned leftover."""
    thresholds = report.thresholds
    to_break = [lock for lock in report.locks if lock.verdict is Verdict.ORPHANED]
    fresh = rejudge(to_break, thresholds)
    outcomes: list[Outcome] = []
    for lock in report.locks:
        if lock.verdict is not Verdict.ORPHANED:
            outcomes.append(intended(lock))
            continue
        again = fresh.get(lock.path)
        if again is None:
            outcomes.append(
                Outcome(
                    path=lock.path,
                    outcome=OutcomeKind.GONE,
                    detail="Released before the break.",
                    verdict=lock.verdict,
                )
            )
        elif again.observation.identity != lock.observation.identity:
            outcomes.append(
                Outcome(
                    path=lock.path,
                    outcome=OutcomeKind.CONFLICT,
                    detail="Changed since it was judged (released, and a new lock taken); left"
                    " alone.",
                    verdict=again.verdict,
                )
            )
        elif again.verdict is not Verdict.ORPHANED:
            outcomes.append(
                Outcome(
                    path=lock.path,
                    outcome=OutcomeKind.KEPT,
                    detail=again.judgement.reason,
                    verdict=again.verdict,
                )
            )
        else:
            # Identity and verdict agree, so break the lock as judged (with the directory
            # identity taken at scan time).
            outcomes.append(break_lock(lock, before_break))
    for leftover in report.leftovers:
        if leftover.verdict is Verdict.ORPHANED:
            outcomes.append(remove_leftover(leftover, thresholds))
        else:
            outcomes.append(intended(leftover))
    return tuple(outcomes)


def clean(
    paths: PathArg | Iterable[PathArg] = ".",
    *,
    force: bool = False,
    dry_run: bool = False,
    confirm: Confirm | None = None,
    wait: float = 0.0,
    min_age: float = MIN_AGE,
    shared_min_age: float = SHARED_MIN_AGE,
    shared: bool = False,
    progress: Progress | None = None,
    on_wait: OnWait | None = None,
    before_break: BeforeBreak | None = None,
) -> CleanReport:
    """Scan `paths` (one path or several) and remove what is orphaned.

    Removes only with `force=True`, or when `confirm(report, plan)` returns True; otherwise (and
    with `dry_run=True`) the outcomes say `would-remove` and nothing is touched. `wait` re-scans
    for up to that many seconds until no lock is in flight (`active`, `recent`, or too young to
    judge where holders are invisible), then cleans what is orphaned; `on_wait(report, left)` is
    called after each re-scan that still has to wait, with the seconds left.
    """
    if math.isnan(wait) or wait < 0:
        raise UsageError(f"--wait {wait}: give a number of seconds >= 0")
    paths = as_paths(paths)
    started = time.monotonic()
    rescan = partial(scan, paths, min_age=min_age, shared_min_age=shared_min_age, shared=shared)
    report = rescan(progress=progress)
    timed_out = False
    if wait > 0:
        deadline = started + wait
        while report.transient():  # a write in flight, or a lock too young to judge
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if on_wait is not None:
                on_wait(report, left)
            time.sleep(min(_POLL_SECONDS, left))
            report = rescan()
    waited = time.monotonic() - started if wait > 0 else 0.0
    planned = plan(report)
    has_work = any(o.outcome is OutcomeKind.WOULD_REMOVE for o in planned)
    go = has_work and not dry_run and (force or (confirm is not None and confirm(report, planned)))
    outcomes = execute(report, before_break) if go else planned
    return CleanReport(
        scan=report, outcomes=outcomes, waited_seconds=waited, wait_timed_out=timed_out
    )
