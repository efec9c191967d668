"""Machine output (`--json`, schema 1): the contract scripts depend on. Add keys, never rename."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..journal.workers import rustuna_pid
from ..model import CleanReport, Holder, LeftoverReport, LockReport, Outcome, ScanReport
from .text import json_path

if TYPE_CHECKING:  # scan's start-up does not pay for the journal modules
    from ..actions.repair import RepairReport
    from ..actions.trials import TrialsReport
    from ..journal.check import JournalHealth
    from ..journal.replay import OpenTrial
SCHEMA = 1


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def holder_json(holder: Holder) -> dict[str, Any]:
    return {
        "pid": holder.pid,
        "name": holder.name,
        "user": holder.user,
        "status": holder.status,
        "started": _iso(holder.started),
        "cmdline": holder.cmdline,
        "writing": holder.writing,
    }


def lock_json(lock: LockReport) -> dict[str, Any]:
    obs = lock.observation
    journal = obs.journal_state
    return {
        "path": json_path(obs.path),
        "journal": json_path(obs.journal),
        "kind": obs.identity.kind.value,
        "target": None if obs.identity.target is None else json_path(obs.identity.target),
        "resolved_target": None if obs.resolved_target is None else json_path(obs.resolved_target),
        "dangling": obs.dangling,
        "age_seconds": round(obs.age_seconds, 3),
        "owner_uid": obs.owner_uid,
        "owner": obs.owner,
        "filesystem": obs.filesystem.type,
        "network_filesystem": obs.filesystem.network,
        "unseen": [{"what": u.blindness.value, "why": u.sentence} for u in obs.unseen],
        "unreadable": obs.unreadable,
        "predates_boot": obs.predates_boot,
        "record": record_json(lock),
        "journal_exists": journal.exists,
        "journal_size": journal.size,
        "journal_health": journal.health.value,
        "journal_prognosis": journal.prognosis.value,
        "holders": [holder_json(h) for h in lock.holders],
        "readers": [holder_json(h) for h in lock.readers],
        "verdict": lock.verdict.value,
        "reason": lock.judgement.reason,
    }


def record_json(lock: LockReport) -> dict[str, Any] | None:
    obs = lock.observation
    if obs.record is None or obs.record_judgement is None:
        return None
    document: dict[str, Any] = asdict(obs.record)
    document["started"] = _iso(obs.record.started)
    document["acquired_at"] = _iso(obs.record.acquired_at)
    document["heartbeat_at"] = _iso(obs.record.heartbeat_at)
    document["heartbeat_age_seconds"] = round(obs.record_judgement.heartbeat_age, 3)
    document["liveness"] = obs.record_judgement.liveness.value
    document["why"] = obs.record_judgement.why
    return document


def leftover_json(leftover: LeftoverReport) -> dict[str, Any]:
    return {
        "path": json_path(leftover.path),
        "journal": json_path(leftover.journal),
        "origin": leftover.origin.value,
        "age_seconds": round(leftover.age_seconds, 3),
        "verdict": leftover.verdict.value,
        "reason": leftover.judgement.reason,
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "path": json_path(outcome.path),
        "outcome": outcome.outcome.value,
        "verdict": outcome.verdict.value,
        "detail": outcome.detail,
    }


def scan_json(report: ScanReport, removed: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "host": report.host,
        "roots": [json_path(r) for r in report.roots],
        "min_age": report.thresholds.min_age,
        "shared_min_age": report.thresholds.shared_min_age,
        "locks": [lock_json(lock) for lock in report.locks],
        "leftovers": [leftover_json(leftover) for leftover in report.leftovers],
        "problems": [{"path": json_path(p.path), "message": p.message} for p in report.problems],
        "journals": [
            {
                "path": json_path(j.path),
                "health": j.health.value,
                "prognosis": j.prognosis.value,
            }
            for j in report.journals
        ],
        "container": report.container,
        "shared": report.thresholds.shared,
        "removed": [json_path(p) for p in removed],
        "processes_examined": report.processes_examined,
        "elapsed_seconds": round(report.elapsed_seconds, 4),
        "needs_attention": report.needs_attention(),
    }


def clean_json(report: CleanReport) -> dict[str, Any]:
    document = scan_json(report.scan, report.removed)
    document["outcomes"] = [outcome_json(o) for o in report.outcomes]
    document["waited_seconds"] = round(report.waited_seconds, 3)
    document["wait_timed_out"] = report.wait_timed_out
    document["needs_attention"] = report.needs_attention()
    return document


def dumps(document: dict[str, Any]) -> str:
    try:
        import orjson  # ~10x faster for a scan of thousands of locks
    except ImportError:  # pragma: no cover - orjson is a dependency
        import json

        return json.dumps(document, indent=2, allow_nan=False)
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def health_json(health: JournalHealth, *, open_trials: bool = True) -> dict[str, Any]:
    """`open_trials=False` where they were not collected (repair's before and after): the
    key is left out rather than an empty list a script would read as "none open"."""
    document = {
        "path": json_path(health.path),
        "healthy": health.healthy,
        "prognosis": health.prognosis.value,
        "summary": health.summary,
        "bytes": health.size,
        "lines": health.lines,
        "ops": health.ops,
        "studies": health.studies,
        "trials_by_state": health.trials_by_state,
        "discarded_trials": health.discarded_trials,
        "newer_ops": {str(code): count for code, count in health.newer_ops.items()},
        "torn_tail_bytes": health.torn_tail_bytes,
        "nul_bytes": health.nul_bytes,
        "nul_runs": health.nul_runs,
        "damage_count": health.damage_count,
        "damage": [
            {
                "problem": d.problem.value,
                "line": d.line,
                "offset": d.offset,
                "length": d.length,
                "detail": d.detail,
                "salvage_offset": d.salvage_offset,
            }
            for d in health.damage
        ],
    }
    if open_trials:
        document["open_trials"] = [open_trial_json(t) for t in health.open_trials]
    return document


def open_trial_json(trial: OpenTrial) -> dict[str, Any]:
    return {
        "study": trial.study_name,
        "number": trial.number,
        "trial_id": trial.trial_id,
        "state": trial.state,
        "worker_id": trial.worker_id,
        "worker_pid": rustuna_pid(trial.worker_id),  # Rustuna's ids carry one; Optuna's none
        "created_by": trial.created_by,
        "datetime_start": trial.datetime_start,
        "journal_line": trial.line,
        "abandoned": trial.abandoned,
        "evidence": trial.evidence,
        "discarded": trial.discarded,
    }


def check_json(results: list[JournalHealth]) -> dict[str, Any]:
    return {"schema": SCHEMA, "journals": [health_json(h) for h in results]}


def repair_json(reports: list[RepairReport]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "journals": [
            {
                "path": json_path(r.journal),
                "performed": r.performed,
                "before": health_json(r.before, open_trials=False),
                "plan": [
                    {
                        "line": f.damage.line,
                        "offset": f.damage.offset,
                        "action": f.action,
                        "sentence": f.sentence,
                    }
                    for f in r.plan
                ],
                "after": None if r.after is None else health_json(r.after, open_trials=False),
                "backup": None if r.backup is None else json_path(r.backup),
                "quarantine": None if r.quarantine is None else json_path(r.quarantine),
                "verified": r.verified,
                "elapsed_seconds": round(r.elapsed_seconds, 3),
            }
            for r in reports
        ],
    }


def trials_json(report: TrialsReport) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "journal": json_path(report.journal),
        "open_trials": [open_trial_json(t) for t in report.health.open_trials],
        "actions": [
            {
                "study": a.trial.study_name,
                "number": a.trial.number,
                "action": a.action.value,
                "detail": a.detail,
            }
            for a in report.actions
        ],
    }


def event_line(event: Any) -> str:
    """One `watch` event as one compact JSON line."""
    document = {
        "time": _iso(event.time),
        "event": event.event,
        "path": json_path(event.path),
        "verdict": event.verdict or None,
        "reason": event.reason,
    }
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency
        import json

        return json.dumps(document)
    return orjson.dumps(document).decode()


def migrate_json(report: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "journal": json_path(report.journal),
        "url": report.url,
        "performed": report.performed,
        "verified": report.verified,
        "difference": report.difference,
        "studies": [{"name": s.name, "trials_by_state": s.trials_by_state} for s in report.studies],
        "storage_line": report.storage_line,
        "elapsed_seconds": round(report.elapsed_seconds, 3),
        "discarded_trials": report.discarded_trials,
    }
