"""One artifact as the words people read, shared by the terminal tables and the plain lines."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Holder, LeftoverReport, LockReport
from ..words import human_age
from .text import display_path, relative_to_root


@dataclass(frozen=True, kw_only=True)
class Fields:
    path: str  # relative to the scanned root, escaped
    kind: str
    age: str
    holder: str
    journal: str
    verdict: str
    reason: str
    filesystem: str


def holder_text(holders: tuple[Holder, ...], readers: tuple[Holder, ...]) -> str:
    parts = [f"{h.pid} {h.name}" + (" (stopped)" if h.stopped else "") for h in holders]
    if readers:
        parts.append(f"{len(readers)} reader(s)")
    return display_path("; ".join(parts)) if parts else "-"


def lock_fields(lock: LockReport) -> Fields:
    obs = lock.observation
    kind = "dangling" if obs.dangling else obs.identity.kind.value
    return Fields(
        path=display_path(relative_to_root(obs.path, obs.root)),
        kind=kind if obs.unreadable is None else "unreadable",
        age="?" if obs.unreadable is not None and obs.owner_uid < 0 else human_age(obs.age_seconds),
        holder=holder_text(lock.holders, lock.readers)
        if obs.record is None or lock.holders
        else display_path(obs.record.who),
        journal=obs.journal_state.health.value,
        verdict=lock.verdict.value,
        reason=display_path(lock.judgement.reason),
        filesystem=obs.filesystem.type,
    )


def leftover_fields(leftover: LeftoverReport) -> Fields:
    return Fields(
        path=display_path(relative_to_root(leftover.path, leftover.root)),
        kind="leftover",
        age=human_age(leftover.age_seconds),
        holder="-",
        journal="-",
        verdict=leftover.verdict.value,
        reason=display_path(leftover.judgement.reason),
        filesystem="-",
    )
