"""The verdict: a pure function from what was observed to (verdict, reason).

Fails closed: a lock is `orphaned` only when no holder can exist. Anything this host cannot see
(another user's processes without root, other hosts on a network filesystem) makes it `unknown`
until the evidence (age beyond Optuna's grace period) decides it.
"""

from __future__ import annotations

from .holders import describe
from .model import (
    Holder,
    Judgement,
    LeftoverOrigin,
    LockKind,
    LockObservation,
    Thresholds,
    Verdict,
)


def human_age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


DANGLING_NOTE = (
    " Its target {target!r} does not resolve: Optuna's waiters spin at 100% CPU on such a lock"
    " forever and their grace period never fires."
)


def judge_lock(
    observation: LockObservation,
    holders: tuple[Holder, ...],
    uninspectable: int,
    thresholds: Thresholds,
) -> Judgement:
    """Judge one lock.

    `holders` are the live processes on this host with the journal open for writing (zombies
    already excluded); `uninspectable` is how many live processes of the lock's owner could not
    be inspected.
    """
    judgement = _judge(observation, holders, uninspectable, thresholds)
    if observation.dangling and observation.identity.target is not None:
        judgement = Judgement(
            judgement.verdict,
            judgement.reason + DANGLING_NOTE.format(target=observation.identity.target),
            judgement.transient,
        )
    return judgement


def _judge(
    obs: LockObservation,
    holders: tuple[Holder, ...],
    uninspectable: int,
    thresholds: Thresholds,
) -> Judgement:
    age = human_age(obs.age_seconds)
    if obs.identity.kind is LockKind.OTHER:
        return Judgement(
            Verdict.UNKNOWN,
            "Something that is not an Optuna lock stands at this name and blocks every worker;"
            " the doctor never removes it: look at it and remove it by hand if it is stale.",
        )

    # A live writer comes first, even before the boot-time rule: whatever the lock's history,
    # removing it while something writes the journal would let a second writer in.
    if holders:
        running = tuple(h for h in holders if not h.stopped)
        if running:
            return Judgement(
                Verdict.ACTIVE,
                f"Process {describe(running)} is writing the journal: a write is in flight.",
                transient=True,
            )
        pid = holders[0].pid
        return Judgement(
            Verdict.STUCK,
            f"Process {describe(holders)} holds the journal open for writing but is stopped;"
            f" continue it with `kill -CONT {pid}` (or `fg`) or end it with `kill {pid}`.",
        )

    fs = obs.filesystem
    if not fs.network and obs.predates_boot:
        return Judgement(
            Verdict.ORPHANED,
            f"Made before this machine's last boot ({age} old) on a local filesystem:"
            " its holder cannot be alive.",
        )
    if uninspectable:
        return Judgement(
            Verdict.UNKNOWN,
            f"{uninspectable} live process(es) of {obs.owner}, who owns the lock, could not be"
            f" inspected; run as root or as {obs.owner} to decide.",
        )
    if fs.network:
        if obs.age_seconds < thresholds.shared_min_age:
            return Judgement(
                Verdict.UNKNOWN,
                f"On a network filesystem ({fs.type}) where holders on other hosts cannot be seen,"
                f" and only {age} old (< {thresholds.shared_min_age:g}s): wait, or check the"
                " other hosts.",
                transient=True,
            )
        return Judgement(
            Verdict.ORPHANED,
            f"No process on this host holds the journal, and at {age} on {fs.type} the lock is"
            f" older than --shared-min-age ({thresholds.shared_min_age:g}s, Optuna's grace period);"
            " other hosts were not seen.",
        )
    if obs.age_seconds < thresholds.min_age:
        return Judgement(
            Verdict.RECENT,
            f"No holder seen, but only {age} old (< {thresholds.min_age:g}s): a write may be in"
            " flight.",
            transient=True,
        )
    return Judgement(
        Verdict.ORPHANED,
        f"No live process holds the journal open for writing, and the lock is {age} old.",
    )


def judge_leftover(origin: LeftoverOrigin, age_seconds: float, thresholds: Thresholds) -> Judgement:
    """Leftovers block nobody; only a young one may still belong to a release in progress."""
    who = "Optuna's release" if origin is LeftoverOrigin.OPTUNA_RELEASE else "a doctor's break"
    if age_seconds < thresholds.min_age:
        return Judgement(
            Verdict.RECENT,
            f"Renamed {human_age(age_seconds)} ago: {who} in progress may still remove it.",
            transient=True,
        )
    return Judgement(
        Verdict.ORPHANED,
        f"Left by {who} cut short {human_age(age_seconds)} ago; it blocks nobody, safe to remove.",
    )
