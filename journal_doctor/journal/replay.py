"""What Optuna's replay would build from a journal, in a few bytes per trial."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .ops import (
    CREATE_STUDY,
    CREATE_TRIAL,
    DELETE_STUDY,
    DISCARD_TRIALS,
    FINISHED,
    RUNNING,
    SET_TRIAL_STATE_VALUES,
    TRIAL_STATES,
    WAITING,
)


@dataclass(frozen=True)
class OpenTrial:
    """A trial still RUNNING or WAITING at the end of the journal."""

    trial_id: int
    study_id: int
    study_name: str
    number: int
    state: str
    worker_id: str | None  # the worker running it; None while WAITING (nobody holds it)
    datetime_start: str | None
    line: int
    abandoned: bool  # its worker later started another trial: certainly nobody runs it
    created_by: str = ""  # the worker id that created it (for WAITING: who enqueued it)
    evidence: str = ""  # why it is abandoned, when a guarded worker's heartbeat proves it
    discarded: bool = False  # named by a DISCARD_TRIALS op (Rustuna's `discard_trials()`)

    @property
    def crash_victim(self) -> bool:
        """RUNNING, and not discarded (its writer gave it up on purpose): what a crash may
        have left, and what `trials --fail` and `--retry` act on."""
        return self.state == "RUNNING" and not self.discarded

    @property
    def started_at(self) -> float | None:
        """`datetime_start` as a timestamp: an aware one (Optuna 5, Rustuna) by its offset, a
        naive one (Optuna 3.6-4.4) as this host's local time, which its writer used."""
        if not self.datetime_start:
            return None
        try:
            return datetime.fromisoformat(self.datetime_start).timestamp()
        except ValueError:
            return None


@dataclass(slots=True)
class _Open:
    """What the replay keeps of a trial while it is RUNNING or WAITING (mutable: a WAITING
    trial is taken by a worker, which makes it RUNNING)."""

    study_id: int
    number: int
    state: int
    worker_id: str | None  # the worker running it; None while WAITING
    datetime_start: str | None
    line: int
    created_by: str


@dataclass
class Replay:
    """What Optuna's replay would build, in a few bytes per trial."""

    study_names: dict[str, int] = field(default_factory=dict)
    alive: set[int] = field(default_factory=set)
    states: bytearray = field(default_factory=bytearray)
    trials_per_study: dict[int, int] = field(default_factory=dict)
    open: dict[int, _Open] = field(default_factory=dict)  # trial id -> what an OpenTrial needs
    last_owned: dict[str, int] = field(default_factory=dict)  # worker -> trial it last ran
    # Trials a DISCARD_TRIALS op named (Rustuna 0.2's op 10). Optuna 5 replays them as they
    # were (it ignores the op); Rustuna's readers with `apply_discard=True` leave them out.
    discarded: set[int] = field(default_factory=set)
    # Details of open trials cost memory per RUNNING trial; `check` only needs their count.
    track_open: bool = True

    def apply(self, op: dict[str, Any], line: int) -> None:
        code = op["op_code"]
        if code == SET_TRIAL_STATE_VALUES:
            tid = op["trial_id"]
            if type(tid) is not int or not 0 <= tid < len(self.states):
                return
            current, new = self.states[tid], op["state"]
            if current in FINISHED or (new == RUNNING and current == RUNNING):
                return
            self.states[tid] = new
            if new in FINISHED:
                self.open.pop(tid, None)
            elif new == RUNNING and tid in self.open:
                entry = self.open[tid]  # absent unless track_open
                entry.state, entry.worker_id = RUNNING, op["worker_id"]
                entry.datetime_start = op.get("datetime_start", entry.datetime_start)
                self.last_owned[op["worker_id"]] = tid
        elif code == CREATE_TRIAL:
            sid = op["study_id"]
            if sid not in self.alive:
                return
            tid = len(self.states)
            state = op.get("state", RUNNING)
            state = state if state in range(5) else RUNNING
            self.states.append(state)
            number = self.trials_per_study[sid]
            self.trials_per_study[sid] = number + 1
            if self.track_open and state in (RUNNING, WAITING):
                worker = op["worker_id"]
                runner = worker if state == RUNNING else None
                self.open[tid] = _Open(
                    sid, number, state, runner, op["datetime_start"], line, worker
                )
                if state == RUNNING:
                    self.last_owned[worker] = tid
        elif code == CREATE_STUDY:
            if op["study_name"] not in self.study_names:
                sid = len(self.study_names)
                self.study_names[op["study_name"]] = sid
                self.alive.add(sid)
                self.trials_per_study[sid] = 0
        elif code == DELETE_STUDY:
            self.alive.discard(op["study_id"])
        elif code == DISCARD_TRIALS:
            ids = op.get("trial_ids")
            if type(ids) is list:
                self.discarded.update(
                    tid for tid in ids if type(tid) is int and 0 <= tid < len(self.states)
                )

    def open_trials(self) -> tuple[OpenTrial, ...]:
        names = {sid: name for name, sid in self.study_names.items()}
        return tuple(
            self._open_trial(tid, entry, names) for tid, entry in sorted(self.open.items())
        )

    def _open_trial(self, tid: int, entry: _Open, names: dict[int, str]) -> OpenTrial:
        running = entry.state == RUNNING
        return OpenTrial(
            trial_id=tid,
            study_id=entry.study_id,
            study_name=names.get(entry.study_id, "?"),
            number=entry.number,
            state=TRIAL_STATES[entry.state],
            worker_id=entry.worker_id,
            datetime_start=entry.datetime_start,
            line=entry.line,
            abandoned=running and self.last_owned.get(entry.worker_id or "", tid) != tid,
            created_by=entry.created_by,
            discarded=tid in self.discarded,
        )
