"""Trial heartbeats for a journal, outside the journal (which must not grow with time).

Each guarded worker beats in `<journal>.heartbeats/<worker>`, where `<worker>` is the uuid that
starts every journal worker id it writes (`<uuid4>-<thread id>`): the file holds its record
(`guard.record`), written when the storage is made and rewritten by Optuna's heartbeat thread
while a trial runs. A RUNNING trial belongs to the worker whose id wrote its CREATE_TRIAL (or
the RUNNING state of an enqueued one); it is stale when that worker's record proves it dead: on
its own host by /proc (pid gone, reused, or a zombie), elsewhere by a heartbeat older than the
grace period on the filesystem's clock. Keying by worker, not trial, leaves no gap: a worker
killed while writing a CREATE_TRIAL already has its file. A RUNNING trial of a worker without a
file (a plain Optuna worker's) is never judged stale: no evidence, no verdict.

Which worker runs which trial is read from the journal itself, incrementally, with the doctor's
own replay model (`journal.replay`), which assigns trial ids exactly as Optuna does.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable

from ..journal.lines import iter_lines
from ..journal.ops import RUNNING, classify, sound_op
from ..journal.replay import Replay
from .record import (
    HolderRecord,
    Liveness,
    RecordJudgement,
    filesystem_now,
    heartbeat_dir,
    judge_record,
    parse,
    read_bytes,
    same_host,
    this_process,
)

_DEAD = (Liveness.DEAD, Liveness.STALE)


def worker_key(worker_id: str) -> str:
    """`<uuid4>-<thread id>` -> the uuid: one per storage object, i.e. per worker process."""
    return worker_id.rsplit("-", 1)[0]


class TrialHeartbeats:
    """This worker's heartbeat file."""

    def __init__(self, journal: str, worker: str, interval: float, grace: float) -> None:
        self.journal = journal
        self.directory = heartbeat_dir(journal)
        self.path = os.path.join(self.directory, worker)
        self.interval = interval
        self.grace = grace
        self._record: HolderRecord | None = None

    def beat(self) -> None:
        if self._record is None:
            os.makedirs(self.directory, exist_ok=True)
            self._record = this_process(token=os.path.basename(self.path),
                                        interval=self.interval, grace=self.grace)  # fmt: skip
        record = self._record._replace(heartbeat_at=time.time())
        temp = f"{self.path}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, record.to_json())
        finally:
            os.close(fd)
        os.replace(temp, self.path)

    def forget(self) -> None:
        """At exit: this worker runs nothing any more."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class RunningTrials:
    """Who runs each RUNNING trial, following the journal from where it last stopped."""

    def __init__(self, journal: str) -> None:
        self.journal = journal
        self.offset = 0
        self.replay = Replay(track_open=True)
        self.lines = 0

    def update(self) -> dict[int, tuple[int, str]]:
        """trial id -> (study id, worker key) of every RUNNING trial."""
        try:
            fd = os.open(self.journal, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        try:
            os.lseek(fd, self.offset, os.SEEK_SET)
            for _, line, length, complete in iter_lines(fd):
                if not complete:
                    break  # a write in progress (or torn): read it next time
                self.offset += length
                self.lines += 1
                op = sound_op(line[:-1]) if line is not None else None
                if op is None and line is not None:
                    op = classify(line).op
                if op is not None:
                    self.replay.apply(op, self.lines)
        finally:
            os.close(fd)
        return {
            tid: (entry[0], worker_key(entry[3]))
            for tid, entry in self.replay.open.items()
            if entry[2] == RUNNING and entry[3]
        }


def judge_workers(journal: str, workers: Iterable[str]) -> dict[str, RecordJudgement]:
    """What each worker's heartbeat file proves (workers without one: absent)."""
    directory = heartbeat_dir(journal)
    judged: dict[str, RecordJudgement] = {}
    fs_now: float | None = None
    for worker in set(workers):
        read = read_bytes(os.path.join(directory, worker))
        record = parse(read[0]) if read else None
        if record is None or read is None:
            continue
        if same_host(record):
            now = time.time()
        else:
            fs_now = filesystem_now(directory) if fs_now is None else fs_now
            now = fs_now
        judged[worker] = judge_record(record, read[1].st_mtime, now)
    return judged


def stale_trials(running: dict[int, tuple[int, str]], study_id: int, journal: str) -> list[int]:
    """The RUNNING trials of this study whose worker's heartbeat proves it dead."""
    mine = {tid: worker for tid, (sid, worker) in running.items() if sid == study_id}
    judged = judge_workers(journal, mine.values())
    return sorted(tid for tid, w in mine.items() if w in judged and judged[w].liveness in _DEAD)


def prune(journal: str, running: dict[int, tuple[int, str]]) -> None:
    """Remove the files of workers proven dead that run nothing any more: a fleet restarted
    for weeks leaves one file per worker otherwise."""
    directory = heartbeat_dir(journal)
    try:
        names = [n for n in os.listdir(directory) if not n.endswith(".tmp")]
    except OSError:
        return
    busy = {worker for _, worker in running.values()}
    for worker, judged in judge_workers(journal, set(names) - busy).items():
        if judged.liveness in _DEAD:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, worker))
