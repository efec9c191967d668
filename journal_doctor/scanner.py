"""`scan`: discover -> observe -> survey holders (one pass) -> judge."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from .discover import LeftoverCandidate, LockCandidate, discover
from .errors import UsageError
from .model import (
    HolderSurvey,
    LeftoverReport,
    LockObservation,
    LockReport,
    ScanProblem,
    ScanReport,
    Thresholds,
)

if TYPE_CHECKING:
    from .observe import Observer

# observe, holders and judge are imported where they are first needed: a scan that finds no
# lock (the common case in a job script) never loads them, and start-up is a measured goal.


class ProgressEvent(NamedTuple):
    """Reported to the caller's progress callback; the core itself never prints."""

    stage: str  # "discovered", "holders", "judged"
    total: int
    detail: str = ""


Progress = Callable[[ProgressEvent], None]


def _no_progress(event: ProgressEvent) -> None:
    pass


def hostname() -> str:
    # os.uname() needs no import of socket (a few ms of every start-up).
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket  # pragma: no cover - Windows

    return socket.gethostname()


def check_roots(paths: Iterable[str]) -> tuple[str, ...]:
    roots = tuple(paths) or (".",)
    for root in roots:
        # lexists: a dangling lock symlink given by name is a perfectly good PATH.
        if not os.path.lexists(root):
            raise UsageError(
                f"{root}: no such file or directory; give a directory, a journal or a lock file"
            )
    return roots


def survey_for(observations: Sequence[LockObservation]) -> HolderSurvey:
    from .holders import survey_holders

    journals = {
        key: obs.journal for obs in observations if (key := obs.journal_state.key) is not None
    }
    aliases = {a for obs in observations if (a := obs.journal_state.alias) is not None}
    return survey_holders(journals, {obs.owner_uid for obs in observations}, aliases)


def judge_all(
    observations: Sequence[LockObservation], survey: HolderSurvey, thresholds: Thresholds
) -> tuple[LockReport, ...]:
    from .judge import judge_lock

    reports = []
    for obs in observations:
        everyone = survey.holders_of(obs.journal_state.key)
        writers = tuple(h for h in everyone if h.writing)
        readers = tuple(h for h in everyone if not h.writing)
        uninspectable = survey.uninspectable_by_uid.get(obs.owner_uid, 0)
        reports.append(
            LockReport(obs, writers, readers, judge_lock(obs, writers, uninspectable, thresholds))
        )
    return tuple(reports)


def scan(
    paths: Iterable[str] = (".",),
    *,
    min_age: float = 5.0,
    shared_min_age: float = 30.0,
    progress: Progress | None = None,
) -> ScanReport:
    """Find every Optuna journal lock under `paths`, see who holds it, and judge it.

    Raises UsageError when a path does not exist. Unreadable directories do not stop the scan:
    they are listed in the report's `problems` (and make it need attention).
    """
    started = time.monotonic()
    notify = progress or _no_progress
    thresholds = Thresholds(min_age=min_age, shared_min_age=shared_min_age)
    roots = check_roots(paths)
    problems: list[ScanProblem] = []
    # Sorted, so that reports and JSON are stable from one run to the next.
    candidates = sorted(discover(roots, problems.append), key=lambda c: c.path)
    notify(ProgressEvent("discovered", len(candidates)))

    observations: list[LockObservation] = []
    leftovers: list[LeftoverReport] = []
    if candidates:
        from .observe import Observer

        observer = Observer()
    for candidate in candidates:
        try:
            if isinstance(candidate, LockCandidate):
                obs = observer.observe_lock(candidate)
                if obs is not None:
                    observations.append(obs)
            else:
                leftover = observe_leftover(observer, candidate, thresholds)
                if leftover is not None:
                    leftovers.append(leftover)
        except OSError as err:
            problems.append(ScanProblem(candidate.path, err.strerror or str(err)))

    survey = survey_for(observations) if observations else HolderSurvey()
    notify(ProgressEvent("holders", survey.processes_examined))
    locks = judge_all(observations, survey, thresholds) if observations else ()
    notify(ProgressEvent("judged", len(locks) + len(leftovers)))
    return ScanReport(
        roots=roots,
        host=hostname(),
        locks=locks,
        leftovers=tuple(leftovers),
        problems=tuple(problems),
        thresholds=thresholds,
        processes_examined=survey.processes_examined,
        elapsed_seconds=time.monotonic() - started,
    )


def observe_leftover(
    observer: Observer, candidate: LeftoverCandidate, thresholds: Thresholds
) -> LeftoverReport | None:
    from .judge import judge_leftover

    seen = observer.leftover_age(candidate)
    if seen is None:
        return None
    st, age = seen
    directory = os.path.dirname(candidate.path) or "."
    return LeftoverReport(
        path=candidate.path,
        journal=candidate.journal,
        root=candidate.root,
        origin=candidate.origin,
        age_seconds=age,
        device=st.st_dev,
        inode=st.st_ino,
        directory_key=observer.directory_key(directory),
        judgement=judge_leftover(candidate.origin, age, thresholds),
    )
