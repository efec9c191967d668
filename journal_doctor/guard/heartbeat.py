"""Trial heartbeats for a journal, outside the journal (which must not grow with time).

Each RUNNING trial of a guarded worker has a file `<journal>.heartbeats/<trial id>` holding
the worker's record (`guard.record`), rewritten every heartbeat interval. A trial is stale when
its record proves the worker dead: on the worker's own host by /proc (pid gone or reused), else
by a heartbeat older than the grace period on the filesystem's clock. A RUNNING trial without a
heartbeat file (a plain Optuna worker's) is never judged stale: no evidence, no verdict.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterable

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


class TrialHeartbeats:
    def __init__(self, journal: str, interval: float, grace: float) -> None:
        self.directory = heartbeat_dir(journal)
        self.interval = interval
        self.grace = grace
        self.token = uuid.uuid4().hex
        self._record: HolderRecord | None = None

    def path(self, trial_id: int) -> str:
        return os.path.join(self.directory, str(trial_id))

    def beat(self, trial_id: int) -> None:
        if self._record is None:
            os.makedirs(self.directory, exist_ok=True)
            self._record = this_process(token=self.token, interval=self.interval, grace=self.grace)
        record = self._record._replace(heartbeat_at=time.time())
        temp = f"{self.path(trial_id)}.{self.token}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, record.to_json())
        finally:
            os.close(fd)
        os.replace(temp, self.path(trial_id))

    def forget(self, trial_id: int) -> None:
        """The trial finished (here or by fail_stale_trials elsewhere): its file goes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(trial_id))


def judge_trials(journal: str, trial_ids: Iterable[int]) -> dict[int, RecordJudgement]:
    """What the heartbeat files prove of these trials' workers (trials without one: absent)."""
    directory = heartbeat_dir(journal)
    judged: dict[int, RecordJudgement] = {}
    fs_now: float | None = None
    for trial_id in trial_ids:
        read = read_bytes(os.path.join(directory, str(trial_id)))
        record = parse(read[0]) if read else None
        if record is None or read is None:
            continue
        if not same_host(record) and fs_now is None:
            fs_now = filesystem_now(directory)
        now = time.time() if same_host(record) else fs_now
        assert now is not None
        judged[trial_id] = judge_record(record, read[1].st_mtime, now)
    return judged


def stale_trials(journal: str, trial_ids: Iterable[int]) -> list[int]:
    return [
        trial_id
        for trial_id, judged in judge_trials(journal, trial_ids).items()
        if judged.liveness in (Liveness.DEAD, Liveness.STALE)
    ]
