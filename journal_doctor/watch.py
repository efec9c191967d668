"""`watch`: keep a running fleet healed, pass after pass, for workers whose code cannot change.

Each pass is exactly `clean --force`: the same judge, the same break protocol, orphaned locks
and leftovers only. What changed since the last pass becomes an event: an artifact removed; a
lock first seen stuck or unknown, and when that clears; a path that cannot be read; a root that
vanished; with `fail_stale_trials`, a RUNNING trial failed because a guarded worker's heartbeat
proves its worker dead. The core yields events; it never prints. Between passes it waits on
`stop` (set it from a signal handler), so it ends within one pass, never inside a break.
Polling works everywhere; one pass over a 10,000-entry tree costs a few milliseconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from .errors import DoctorError
from .locks.clean import clean
from .locks.scan import PathArg, as_paths
from .model import MIN_AGE, SHARED_MIN_AGE, OutcomeKind, Verdict

INTERVAL = 5.0
_WATCHED = (Verdict.STUCK, Verdict.UNKNOWN)


@dataclass(frozen=True, kw_only=True)
class WatchEvent:
    time: float
    event: str  # removed, stuck, unknown, cleared, conflict, failed, unreadable, missing,
    #             trial-failed
    path: str
    verdict: str
    reason: str


def watch(
    paths: PathArg | Iterable[PathArg] = ".",
    *,
    interval: float = INTERVAL,
    min_age: float = MIN_AGE,
    shared_min_age: float = SHARED_MIN_AGE,
    shared: bool = False,
    fail_stale_trials: bool = False,
    stop: Stop | None = None,
) -> Iterator[WatchEvent]:
    """Yield events until `stop` is set (or forever)."""
    stop = stop or StopFlag()
    roots = as_paths(paths)
    seen: dict[str, tuple[str, str]] = {}  # path -> (event, verdict) of what is reported now
    while not stop.is_set():
        current: dict[str, tuple[str, str, str]] = {}
        for root in roots:
            yield from _pass(root, current, min_age, shared_min_age, shared)
            if fail_stale_trials:
                yield from _fail_stale_trials(root)
        for path, (event, verdict, reason) in current.items():
            if seen.get(path) != (event, verdict):
                yield WatchEvent(
                    time=time.time(), event=event, path=path, verdict=verdict, reason=reason
                )
        for path in seen.keys() - current.keys():
            yield WatchEvent(
                time=time.time(), event="cleared", path=path, verdict="", reason="no longer seen"
            )
        seen = {path: (event, verdict) for path, (event, verdict, _) in current.items()}
        stop.wait(interval)


class Stop(Protocol):
    """What ends a watch: a `threading.Event`, or a `StopFlag` set from a signal handler."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class StopFlag:
    """A stop a signal handler may set: a plain attribute, no lock. (A handler that sets a
    `threading.Event` runs in the main thread, which may hold that Event's lock at that very
    moment; a watch has been seen not to end on Ctrl-C.) Waiting polls it every 0.1 s."""

    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.flag and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return self.flag


def _pass(
    root: str,
    current: dict[str, tuple[str, str, str]],
    min_age: float,
    shared_min_age: float,
    shared: bool,
) -> Iterator[WatchEvent]:
    """One `clean --force` of a root: removals at once; states into `current`."""
    try:
        report = clean(root, force=True, min_age=min_age, shared_min_age=shared_min_age,
                       shared=shared)  # fmt: skip
    except DoctorError as err:  # the root vanished, or cannot be read
        current[root] = ("missing" if not os.path.lexists(root) else "unreadable", "", str(err))
        return
    for problem in report.scan.problems:
        current[problem.path] = ("unreadable", "", problem.message)
    for outcome in report.outcomes:
        verdict = outcome.verdict.value
        if outcome.outcome is OutcomeKind.REMOVED:
            yield WatchEvent(
                time=time.time(),
                event="removed",
                path=outcome.path,
                verdict=verdict,
                reason=outcome.detail,
            )
        elif outcome.outcome in (OutcomeKind.CONFLICT, OutcomeKind.FAILED):
            yield WatchEvent(
                time=time.time(),
                event=outcome.outcome.value,
                path=outcome.path,
                verdict=verdict,
                reason=outcome.detail,
            )
        elif outcome.verdict in _WATCHED:
            current[outcome.path] = (verdict, verdict, outcome.detail)


def _fail_stale_trials(root: str) -> Iterator[WatchEvent]:
    """RUNNING trials whose guarded worker's heartbeat proves it dead: FAIL, nothing else."""
    from .actions.trials import TrialAction, fail_proven

    for journal in guarded_journals(root):
        try:
            outcomes = fail_proven(journal)
        except (DoctorError, OSError) as err:
            yield WatchEvent(
                time=time.time(), event="unreadable", path=journal, verdict="", reason=str(err)
            )
            continue
        for outcome in outcomes:
            if outcome.action is TrialAction.FAILED:
                yield WatchEvent(time=time.time(), event="trial-failed", path=journal, verdict="",
                                 reason=f"trial {outcome.trial.number} of"
                                 f" {outcome.trial.study_name}:"
                                 f" {outcome.trial.evidence}")  # fmt: skip


def guarded_journals(root: str) -> Iterator[str]:
    """Journals of guarded workers under `root`: those with a `<journal>.heartbeats` folder."""
    from .protocol.record import HEARTBEATS_SUFFIX

    if not os.path.isdir(root):
        if os.path.isdir(root + HEARTBEATS_SUFFIX):
            yield root
        return
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    if entry.name.endswith(HEARTBEATS_SUFFIX):
                        yield entry.path[: -len(HEARTBEATS_SUFFIX)]
                    else:
                        stack.append(entry.path)
        except OSError:
            continue  # reported by the pass's own scan
