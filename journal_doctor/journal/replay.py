"""What Optuna's replay would build from a journal, in a few bytes per trial."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ops import RUNNING, TRIAL_STATES, WAITING

_FINISHED = (1, 2, 3)  # COMPLETE, PRUNED, FAIL


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


@dataclass
class Replay:
    """What Optuna's replay would build, in a few bytes per trial."""

    study_names: dict[str, int] = field(default_factory=dict)
    alive: set[int] = field(default_factory=set)
    states: bytearray = field(default_factory=bytearray)
    trials_per_study: dict[int, int] = field(default_factory=dict)
    open: dict[int, list[Any]] = field(default_factory=dict)  # trial id -> OpenTrial fields
    last_owned: dict[str, int] = field(default_factory=dict)  # worker -> trial it last ran
    # Details of open trials cost memory per RUNNING trial; `check` only needs their count.
    track_open: bool = True

    def apply(self, op: dict[str, Any], line: int) -> None:
        code = op["op_code"]
        if code == 6:
            tid = op["trial_id"]
            if type(tid) is not int or not 0 <= tid < len(self.states):
                return
            current, new = self.states[tid], op["state"]
            if current in _FINISHED or (new == RUNNING and current == RUNNING):
                return
            self.states[tid] = new
            if new in _FINISHED:
                self.open.pop(tid, None)
            elif new == RUNNING and tid in self.open:
                entry = self.open[tid]  # absent unless track_open
                entry[2], entry[3] = RUNNING, op["worker_id"]
                entry[4] = op.get("datetime_start", entry[4])
                self.last_owned[op["worker_id"]] = tid
        elif code == 4:
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
                self.open[tid] = [sid, number, state, runner, op["datetime_start"], line, worker]
                if state == RUNNING:
                    self.last_owned[worker] = tid
        elif code == 0:
            if op["study_name"] not in self.study_names:
                sid = len(self.study_names)
                self.study_names[op["study_name"]] = sid
                self.alive.add(sid)
                self.trials_per_study[sid] = 0
        elif code == 1:
            self.alive.discard(op["study_id"])

    def open_trials(self) -> tuple[OpenTrial, ...]:
        names = {sid: name for name, sid in self.study_names.items()}
        return tuple(
            OpenTrial(
                trial_id=tid,
                study_id=sid,
                study_name=names.get(sid, "?"),
                number=number,
                state=TRIAL_STATES[state],
                worker_id=worker,
                datetime_start=start,
                line=line,
                abandoned=state == RUNNING and self.last_owned.get(worker, tid) != tid,
                created_by=creator,
            )
            for tid, (sid, number, state, worker, start, line, creator) in sorted(self.open.items())
        )
