"""`scan`: discover -> observe -> survey holders (one pass) -> judge."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..model import (
    MIN_AGE,
    SHARED_MIN_AGE,
    HolderSurvey,
    JournalReport,
    LeftoverReport,
    LockObservation,
    LockReport,
    ScanProblem,
    ScanReport,
    Thresholds,
)
from ..protocol.record import hostname
from .discover import (
    Candidate,
    JournalCandidate,
    LeftoverCandidate,
    LockCandidate,
    RootKind,
    classify_root,
    discover,
)

if TYPE_CHECKING:
    from .observe import Observer

# observe, holders and judge are imported where they are first needed: a scan that finds no
# lock (the common case in a job script) never loads them, and start-up is a measured goal.


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    """Reported to the caller's progress callback; the core itself never prints."""

    stage: str  # "discovered", "watching heartbeats", "processes examined", "judged"
    total: int
    detail: str = ""


Progress = Callable[[ProgressEvent], None]


def _no_progress(event: ProgressEvent) -> None:
    pass


def thresholds_or_fail(min_age: float, shared_min_age: float, shared: bool = False) -> Thresholds:
    """NaN would make every comparison false (a fresh lock `orphaned`); negative is nonsense.
    `inf` is allowed: never by age."""
    for name, value in (("--min-age", min_age), ("--shared-min-age", shared_min_age)):
        if math.isnan(value) or value < 0:
            raise UsageError(
                f"{name} {value}: give a number of seconds >= 0 (inf: never judge by age)"
            )
    return Thresholds(min_age=float(min_age), shared_min_age=float(shared_min_age), shared=shared)


PathArg = str | os.PathLike[str]


def as_paths(paths: PathArg | Iterable[PathArg]) -> tuple[str, ...]:
    """One path (str or PathLike) or several; none means the current directory."""
    if isinstance(paths, (str, os.PathLike)):
        return (os.fspath(paths),)
    return tuple(os.fspath(p) for p in paths) or (".",)


def check_roots(paths: PathArg | Iterable[PathArg]) -> tuple[tuple[str, RootKind], ...]:
    return tuple((root, classify_root(root, _is_journal_file)) for root in as_paths(paths))


def _is_journal_file(path: str) -> bool:
    # Imported only for a PATH that is a file: a scan of a directory never loads the journal
    # modules unless it finds something (start-up is a measured goal).
    from ..journal.probe import is_journal_file

    return is_journal_file(path)


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
            LockReport(
                observation=obs,
                holders=writers,
                readers=readers,
                judgement=judge_lock(obs, writers, uninspectable, thresholds),
            )
        )
    return tuple(reports)


def scan(
    paths: PathArg | Iterable[PathArg] = ".",
    *,
    min_age: float = MIN_AGE,
    shared_min_age: float = SHARED_MIN_AGE,
    shared: bool = False,
    progress: Progress | None = None,
) -> ScanReport:
    """Find every Optuna journal lock under `paths`, see who holds it, and judge it; also every
    journal whose tail will hurt the next worker.

    `paths` is one path or several (str or PathLike). Raises UsageError for a path that does
    not exist, is a FIFO, or a file that is neither a journal nor a lock, and for a NaN or
    negative threshold. Unreadable directories do not stop the scan: they are listed in the
    report's `problems` (and make it need attention).
    """
    started = time.monotonic()
    notify = progress or _no_progress
    thresholds = thresholds_or_fail(min_age, shared_min_age, shared)
    roots = check_roots(paths)
    problems: list[ScanProblem] = []
    # Sorted, so that reports and JSON are stable from one run to the next.
    candidates = sorted(discover(roots, problems.append), key=lambda c: c.path)
    notify(ProgressEvent(stage="discovered", total=len(candidates)))
    journal_candidates = [c for c in candidates if isinstance(c, JournalCandidate)]
    observer, observations, leftovers = _observe_all(candidates, shared, thresholds, problems)
    stale = observer.stale_to_watch(observations) if observer is not None else 0
    if observer is not None and stale:
        notify(
            ProgressEvent(
                stage="watching heartbeats", total=stale, detail="of other hosts that look stale"
            )
        )
        observations = observer.watch_stale(observations)
    survey = survey_for(observations) if observations else HolderSurvey()
    notify(ProgressEvent(stage="processes examined", total=survey.processes_examined))
    locks = judge_all(observations, survey, thresholds) if observations else ()
    notify(ProgressEvent(stage="judged", total=len(locks) + len(leftovers)))
    return ScanReport(
        roots=tuple(root for root, _ in roots),
        host=hostname(),
        locks=locks,
        leftovers=tuple(leftovers),
        problems=tuple(problems),
        thresholds=thresholds,
        processes_examined=survey.processes_examined,
        elapsed_seconds=time.monotonic() - started,
        journals=damaged_journals(observations, journal_candidates),
        container=observer.sight.container if observer is not None else _in_container(),
    )


def _observe_all(
    candidates: Sequence[Candidate],
    shared: bool,
    thresholds: Thresholds,
    problems: list[ScanProblem],
) -> tuple[Observer | None, list[LockObservation], list[LeftoverReport]]:
    """Every lock and leftover looked at once (the observer, and its process-wide costs, only
    when there is one); a path that cannot be looked at becomes a problem, not an error."""
    observer: Observer | None = None
    observations: list[LockObservation] = []
    leftovers: list[LeftoverReport] = []
    for candidate in candidates:
        if isinstance(candidate, JournalCandidate):
            continue
        if observer is None:
            from .observe import Observer

            observer = Observer(shared=shared)
        try:
            if isinstance(candidate, LockCandidate):
                obs = observer.observe_lock(candidate)
                if obs is not None:
                    observations.append(obs)
            else:
                leftover = leftover_report(observer, candidate, thresholds)
                if leftover is not None:
                    leftovers.append(leftover)
        except OSError as err:
            problems.append(ScanProblem(path=candidate.path, message=err.strerror or str(err)))
    return observer, observations, leftovers


def _in_container() -> bool:
    from .visibility import in_container

    return in_container()


def damaged_journals(
    observations: Sequence[LockObservation], candidates: Sequence[JournalCandidate]
) -> tuple[JournalReport, ...]:
    """Every journal whose tail will hurt the next worker: those beside locks were probed when
    their lock was observed; the others are probed now (a few bytes, only files named like
    journals, and only their tail once their head says they are one)."""
    found: dict[str, JournalReport] = {}
    for obs in observations:
        state = obs.journal_state
        if state.looks_like_journal and state.health.hurts:
            found[obs.journal] = JournalReport(
                path=obs.journal, root=obs.root, health=state.health, prognosis=state.prognosis
            )
    probed = {obs.journal for obs in observations}
    if candidates:
        from ..journal.probe import probe_journal

    for candidate in candidates:
        if candidate.path in probed:
            continue
        state = probe_journal(candidate.path)
        if state.looks_like_journal and state.health.hurts:
            found[candidate.path] = JournalReport(
                path=candidate.path,
                root=candidate.root,
                health=state.health,
                prognosis=state.prognosis,
            )
    return tuple(found[path] for path in sorted(found))


def leftover_report(
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
