"""The verdict: a pure function from what was observed to (verdict, reason).

Fails closed: a lock is `orphaned` only when no holder can exist. Anything this host cannot see
(another user's processes without root, other hosts on a network filesystem or behind an export,
processes outside this container) makes it `unknown` until the evidence (age beyond Optuna's
grace period, `--shared-min-age`) decides it. A lock that cannot be read is `unknown`, always.
"""

from __future__ import annotations

from dataclasses import replace

from ..model import (
    OTHER_HOSTS,
    Blindness,
    Holder,
    Judgement,
    LeftoverOrigin,
    LockKind,
    LockObservation,
    Thresholds,
    Verdict,
)
from ..protocol.record import HolderRecord, Liveness, RecordJudgement
from ..words import human_age, limit, processes

DANGLING_NOTE = (
    " Its target {target!r} does not resolve: Optuna's waiters wait on such a lock forever"
    " (<= 4.2 quietly; >= 4.3 spinning at 100% CPU, because their grace period never fires)."
)
# What would decide a lock that this host cannot judge, per blind spot.
DECIDERS = {
    Blindness.NETWORK_FS: "run journal-doctor on the other hosts, or use"
    " journal_doctor.storage() in the workers",
    Blindness.EXPORTED: "run journal-doctor on the client hosts, or use journal_doctor.storage()"
    " in the workers",
    Blindness.SHARED: "run journal-doctor on the other hosts, or use journal_doctor.storage() in"
    " the workers",
    Blindness.CONTAINER: "run journal-doctor on the host, outside the container",
    Blindness.HIDDEN_PROCESSES: "run journal-doctor as root",
    Blindness.NO_CLOCK: "free some space there, or run journal-doctor where it can create a file",
}


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
        judgement = replace(
            judgement,
            reason=judgement.reason + DANGLING_NOTE.format(target=observation.identity.target),
        )
    return judgement


def _judge(
    obs: LockObservation,
    holders: tuple[Holder, ...],
    uninspectable: int,
    thresholds: Thresholds,
) -> Judgement:
    if obs.unreadable is not None:
        return Judgement(
            verdict=Verdict.UNKNOWN,
            reason=f"The lock cannot be read here ({obs.unreadable}); its holder cannot be judged,"
            " and Optuna's waiters may wait on it forever.",
        )
    if obs.identity.kind is LockKind.OTHER:
        return Judgement(
            verdict=Verdict.UNKNOWN,
            reason="Something that is not an Optuna lock stands at this name and blocks every"
            " worker; the doctor never removes it: look at it and remove it by hand if it is"
            " stale.",
        )
    # A live writer comes first, even before the boot-time rule: whatever the lock's history,
    # removing it while something writes the journal would let a second writer in.
    if holders:
        return _judge_holders(holders)
    if obs.record is not None and obs.record_judgement is not None:
        return _judge_record(obs.record, obs.record_judgement)
    blind = {unseen.blindness for unseen in obs.unseen}
    if obs.predates_boot and not blind.intersection(OTHER_HOSTS):
        return Judgement(
            verdict=Verdict.ORPHANED,
            reason=f"Made before this machine's last boot ({human_age(obs.age_seconds)} old) on a"
            " local filesystem: its holder cannot be alive.",
        )
    if uninspectable:
        return Judgement(
            verdict=Verdict.UNKNOWN,
            reason=f"{uninspectable} live process(es) of {obs.owner}, who owns the lock, could not"
            f" be inspected; run the doctor as {obs.owner} or as root to decide.",
        )
    if obs.unseen:
        return _judge_unseen(obs, thresholds)
    age = human_age(obs.age_seconds)
    if obs.age_seconds < thresholds.min_age:
        return Judgement(
            verdict=Verdict.RECENT,
            reason=f"No holder seen, but only {age} old (< --min-age {limit(thresholds.min_age)}):"
            " a write may be in flight.",
            transient=True,
        )
    return Judgement(
        verdict=Verdict.ORPHANED,
        reason=f"No live process holds the journal open for writing, and the lock is {age} old.",
    )


def _judge_holders(holders: tuple[Holder, ...]) -> Judgement:
    running = tuple(h for h in holders if not h.stopped)
    if running:
        return Judgement(
            verdict=Verdict.ACTIVE,
            reason=f"Process {processes(running)} is writing the journal: a write is in flight.",
            transient=True,
        )
    pid = holders[0].pid
    return Judgement(
        verdict=Verdict.STUCK,
        reason=f"Process {processes(holders)} holds the journal open for writing but is stopped;"
        f" continue it with `kill -CONT {pid}` (or `fg`) or end it with `kill {pid}`.",
    )


def _judge_record(record: HolderRecord, judged: RecordJudgement) -> Judgement:
    """A guarded lock names its holder: its record decides, without waiting for any age."""
    who = record.who
    if judged.liveness in (Liveness.DEAD, Liveness.STALE):
        return Judgement(
            verdict=Verdict.ORPHANED,
            reason=f"Held by {who} per its holder record, but {judged.why}: dead.",
        )
    if judged.liveness is Liveness.UNKNOWN:
        return Judgement(
            verdict=Verdict.UNKNOWN,
            reason=f"Held by {who} per its holder record, but {judged.why}; or wait.",
            transient=True,
        )
    if judged.liveness is Liveness.STOPPED:
        return Judgement(
            verdict=Verdict.STUCK,
            reason=f"Held by {who}, which is stopped; continue it with `kill -CONT {record.pid}`"
            f" or end it with `kill {record.pid}`.",
        )
    where = "alive" if judged.liveness is Liveness.ALIVE else judged.why
    return Judgement(verdict=Verdict.ACTIVE, reason=f"Held by {who}: {where}.", transient=True)


def _judge_unseen(obs: LockObservation, thresholds: Thresholds) -> Judgement:
    """The shared rule: where holders may be invisible, only an age beyond Optuna's own grace
    period (which its waiters on every host apply too) makes a lock orphaned."""
    age = human_age(obs.age_seconds)
    not_seen = "; ".join(unseen.sentence for unseen in obs.unseen)
    if obs.age_seconds < thresholds.shared_min_age:
        deciders = dict.fromkeys(DECIDERS[unseen.blindness] for unseen in obs.unseen)
        return Judgement(
            verdict=Verdict.UNKNOWN,
            reason=f"No holder seen here, but {not_seen}; and the lock is only {age} old"
            f" (< --shared-min-age {limit(thresholds.shared_min_age)}). To decide:"
            f" {'; or '.join(deciders)}; or wait.",
            transient=True,
        )
    return Judgement(
        verdict=Verdict.ORPHANED,
        reason=f"No process seen here holds the journal, and at {age} the lock is older than"
        f" --shared-min-age ({limit(thresholds.shared_min_age)}, Optuna's grace period), though"
        f" {not_seen}.",
    )


def judge_leftover(origin: LeftoverOrigin, age_seconds: float, thresholds: Thresholds) -> Judgement:
    """Leftovers block nobody; only a young one may still belong to a release in progress."""
    who = "Optuna's release" if origin is LeftoverOrigin.OPTUNA_RELEASE else "a doctor's break"
    if age_seconds < thresholds.min_age:
        return Judgement(
            verdict=Verdict.RECENT,
            reason=f"Renamed {human_age(age_seconds)} ago: {who} in progress may still remove it.",
            transient=True,
        )
    return Judgement(
        verdict=Verdict.ORPHANED,
        reason=f"Left by {who} cut short {human_age(age_seconds)} ago; it blocks nobody, safe to"
        " remove.",
    )
