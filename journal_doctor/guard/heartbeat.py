"""Heartbeats of workers and trials, outside the journal (which must not grow with time).

In `<journal>.heartbeats/`:
- `<worker>`: a guarded worker's record (`protocol.record`), `<worker>` being the uuid that starts
  every journal worker id it writes (`<uuid4>-<thread id>`). One thread per process beats it
  every `heartbeat_interval` for as long as the storage lives, and it is beaten again just before
  each CREATE_TRIAL: a worker killed while creating a trial already has a fresh file.
- `trial-<trial id>`: that trial's own beat, written by `record_heartbeat(trial_id)` (Optuna's
  heartbeat thread, while `study.optimize` runs the trial) and removed when the trial finishes.
  Optuna's thread stops when the objective returns, before the final state is written; that
  write may wait for the lock longer than a grace period (through sshfs a released lock looks
  held for 20 s), so the worker's own thread beats the trial until the state is written
  (`TrialHeartbeats.finishing`): else another worker fails a trial that has a result.

A RUNNING trial is stale, as Optuna's `BaseHeartbeat` defines it, when its own beat is older than
the grace period (on the filesystem's clock), even though its process lives on: an ask-and-tell
service whose evaluator vanished. Its process's record proves it dead sooner on its own host
(/proc: pid gone, reused, or a zombie). A trial with no beat of its own is judged by the beat of
the worker whose id wrote its CREATE_TRIAL (or its RUNNING state). A stopped process (Ctrl-Z, a
debugger) is never stale on its own host: it may be continued. A trial of a worker without a file
(a plain Optuna worker) is never judged: no evidence, no verdict.

Which worker runs which trial is read from the journal itself, incrementally, with the doctor's
own replay model (`journal.replay`), which assigns trial ids exactly as Optuna does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import replace
from typing import Protocol

from ..journal.lines import iter_lines
from ..journal.ops import RUNNING, classify, sound_op
from ..journal.replay import Replay
from ..protocol.record import (
    HolderRecord,
    Liveness,
    RecordJudgement,
    Seen,
    beat_time,
    caching_filesystem,
    filesystem_now,
    heartbeat_dir,
    judge_record,
    parse,
    read_bytes,
    same_host,
    this_process,
    watch_all,
)

logger = logging.getLogger("journal_doctor")

DEAD = (Liveness.DEAD, Liveness.STALE)
TRIAL_PREFIX = "trial-"
Running = dict[int, tuple[int, str]]  # trial id -> (study id, worker key)


def worker_key(worker_id: str) -> str:
    """`<uuid4>-<thread id>` -> the uuid: one per storage object, i.e. per worker process."""
    return worker_id.rsplit("-", 1)[0]


def trial_beat_name(trial_id: int) -> str:
    return f"{TRIAL_PREFIX}{trial_id}"


class TrialHeartbeats:
    """One worker's heartbeat files: its own, and those of the trials it runs."""

    def __init__(self, journal: str, worker: str, interval: float, grace: float) -> None:
        self.journal = journal
        self.directory = heartbeat_dir(journal)
        self.path = os.path.join(self.directory, worker)
        self.interval = interval
        self.grace = grace
        self.last = 0.0  # monotonic time of the worker's last beat
        self._record: HolderRecord | None = None
        self._beaten: set[int] = set()  # trials this process beat: the ones it runs
        self._finishing: set[int] = set()  # of those, the ones whose final state is being written
        self._trials = threading.Lock()  # a finished trial's beat is never written again
        self.pid = os.getpid()

    def beat(self) -> None:
        """The worker's own beat, and that of each trial whose final state it is writing."""
        self._write(self.path)
        self.last = time.monotonic()
        with self._trials:
            for trial_id in self._finishing:
                self._write(self._trial_path(trial_id))

    def beat_trial(self, trial_id: int) -> None:
        with self._trials:
            self._write(self._trial_path(trial_id))
            self._beaten.add(trial_id)

    @contextlib.contextmanager
    def finishing(self, trial_id: int) -> Iterator[None]:
        """While the final state of a trial this process ran is written, its beat goes on; once
        written, the beat is removed (whoever finished the trial: its beat is over)."""
        with self._trials:
            if trial_id in self._beaten:
                self._finishing.add(trial_id)
                with contextlib.suppress(OSError):  # the beating thread retries, and says so
                    self._write(self._trial_path(trial_id))
        try:
            yield
        finally:
            with self._trials:
                self._finishing.discard(trial_id)
        with self._trials:  # written: the trial's beat is over
            self._beaten.discard(trial_id)
            with contextlib.suppress(OSError):
                os.unlink(self._trial_path(trial_id))

    def _trial_path(self, trial_id: int) -> str:
        return os.path.join(self.directory, trial_beat_name(trial_id))

    def _write(self, path: str) -> None:
        if self._record is None or self._record.pid != os.getpid():  # a forked child: itself
            self._record = this_process(token=os.path.basename(self.path),
                                        interval=self.interval, grace=self.grace)  # fmt: skip
        write_record(path, replace(self._record, heartbeat_at=time.time()))

    def forget(self) -> None:
        """This worker runs nothing any more (at exit, or when the doctor's writes are done)."""
        stop_beating(self, self.pid)


def write_record(path: str, record: HolderRecord) -> None:
    """A record written as a new file renamed into place: a reader never sees half of one, and
    on NFS a reader's open of the name meets the new file (close-to-open consistency)."""
    temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"  # one per writer thread
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o644)
    except FileNotFoundError:  # the first record of this journal (or all were pruned)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(temp, flags, 0o644)
    try:
        os.write(fd, record.to_json())
    finally:
        os.close(fd)
    os.replace(temp, path)


class HolderFile:
    """The record of a process that takes symlink locks, `<journal>.heartbeats/holder-<token>`:
    written before its first lock, beaten while the process lives (so `prune` on another host
    keeps it), removed when the lock object goes (`forget`)."""

    def __init__(self, path: str, record: HolderRecord) -> None:
        self.path = path
        self.record = record
        self.interval = record.heartbeat_interval
        self.last = 0.0
        self.pid = os.getpid()

    def beat(self) -> None:
        write_record(self.path, replace(self.record, heartbeat_at=time.time()))
        self.last = time.monotonic()

    def forget(self) -> None:
        stop_beating(self, self.pid)


# --- one thread per process beats every live worker's file --------------------------------


class Beating(Protocol):
    """What the beating thread beats: `beat()` once `interval` has passed since `last`."""

    @property
    def path(self) -> str: ...  # named when a beat fails

    @property
    def interval(self) -> float: ...

    @property
    def last(self) -> float: ...  # monotonic

    def beat(self) -> None: ...


_BEATING: weakref.WeakSet[Beating] = weakref.WeakSet()
_beater: threading.Thread | None = None
_beater_lock = threading.Lock()


def _forget_in_child() -> None:
    """A forked child is another process: what it beats is its own (a parent's files describe
    the parent), and the parent's thread, or a lock it held, is not in the child."""
    global _beater, _beater_lock
    _BEATING.clear()
    _beater, _beater_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def stop_beating(heartbeats: Beating, owner: int) -> None:
    """Beat it no more, and remove its file if this process is `owner`, the one that made it:
    never at a forked child's exit, the file is its parent's."""
    _BEATING.discard(heartbeats)
    if os.getpid() == owner:
        with contextlib.suppress(OSError):
            os.unlink(heartbeats.path)


def keep_beating(heartbeats: Beating) -> None:
    """Beat this for as long as it lives (until `forget`, or it is collected)."""
    global _beater
    _BEATING.add(heartbeats)
    with _beater_lock:
        if _beater is None or not _beater.is_alive():
            _beater = threading.Thread(target=_beat_forever, name="journal-doctor-worker-beat",
                                       daemon=True)  # fmt: skip
            _beater.start()


def _beat_forever() -> None:
    failing: set[str] = set()  # logged once each, until it works again
    while True:
        beating = list(_BEATING)
        tick = min((h.interval for h in beating), default=1.0) / 4
        time.sleep(min(tick, 1.0))
        for heartbeats in beating:
            if time.monotonic() - heartbeats.last < heartbeats.interval:
                continue
            try:
                heartbeats.beat()
                failing.discard(heartbeats.path)
            except Exception:  # any failure: log once, keep beating
                if heartbeats.path not in failing:
                    logger.exception("heartbeat %s failed; retrying", heartbeats.path)
                failing.add(heartbeats.path)


# --- reading the journal: who runs what ---------------------------------------------------


class RunningTrials:
    """Who runs each RUNNING trial, following the journal from where it last stopped."""

    def __init__(self, journal: str) -> None:
        self.journal = journal
        self.offset = 0
        self.replay = Replay(track_open=True)
        self.lines = 0

    def update(self) -> Running:
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
            tid: (entry.study_id, worker_key(entry.worker_id))
            for tid, entry in self.replay.open.items()
            if entry.state == RUNNING and entry.worker_id
        }


# --- judging ------------------------------------------------------------------------------


class _Clock:
    """The filesystem's clock, read once per judgement and only if another host is judged."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._now: float | None = None
        self._read = False
        self._caching: str | None = None

    def now(self, record: HolderRecord) -> float | None:
        if same_host(record):
            return time.time()
        if not self._read:
            self._now, self._read = filesystem_now(self.directory), True
        return self._now

    def caching(self, record: HolderRecord) -> str:
        """The FUSE filesystem (sshfs) another host's beat is seen through, if any."""
        if same_host(record):
            return ""
        if self._caching is None:
            from ..locks.visibility import read_mount_table

            try:
                device = os.stat(self.directory).st_dev
            except OSError:
                device = -1
            filesystem = read_mount_table().by_device.get(device)
            self._caching = (
                caching_filesystem(filesystem.type, filesystem.network) if filesystem else ""
            )
        return self._caching

    def judge(self, record: HolderRecord, beat: float) -> RecordJudgement:
        return judge_record(record, beat, self.now(record), caching=self.caching(record))


def _read_beat(directory: str, name: str) -> tuple[HolderRecord, float] | None:
    path = os.path.join(directory, name)
    read = read_bytes(path)
    record = parse(read[0]) if read else None
    if record is None or read is None:
        return None
    return record, beat_time(path, read[1])


def _judge_trial_beat(record: HolderRecord, beat: float, clock: _Clock) -> RecordJudgement:
    """A trial's own beat: its process's record on its host, and the beat's age everywhere. On
    its own host the record's `heartbeat_at` (written on this very clock) counts too: a file's
    mtime read through sshfs may come from a cache 20 s old, and a live trial must not look
    abandoned for it (the later of the two is kept)."""
    if same_host(record):
        beat = max(beat, record.heartbeat_at)
    judged = clock.judge(record, beat)
    if judged.liveness is not Liveness.ALIVE or judged.heartbeat_age <= record.grace_period:
        return judged
    return RecordJudgement(
        liveness=Liveness.STALE,
        heartbeat_age=judged.heartbeat_age,
        why=f"its heartbeat is {judged.heartbeat_age:.1f}s old (> {record.grace_period:g}s), though"
        f" process {record.pid} lives: abandoned",
    )


def judge_trials(journal: str, running: Running) -> dict[int, RecordJudgement]:
    """What the heartbeats prove of each RUNNING trial that has any: its own beat, or else its
    worker's. Trials of workers with no file (plain Optuna workers) are left out. Another
    host's beat that looks stale is believed only once it stayed still while watched
    (`protocol.record.watch_all`): one wait for all."""
    directory = heartbeat_dir(journal)
    try:
        names = set(os.listdir(directory))
    except OSError:
        return {}
    clock = _Clock(directory)
    reads: dict[str, tuple[HolderRecord, float] | None] = {}  # each file read once
    beat_names: dict[int, str] = {}
    seen: dict[int, Seen] = {}
    for trial_id, (_, worker) in running.items():
        name = trial_beat_name(trial_id)
        if name not in names:
            name = worker  # no beat of its own: its worker's
        if name not in reads:
            reads[name] = _read_beat(directory, name) if name in names else None
        found = reads[name]
        if found is None:
            continue
        record, beat = found
        own = name != worker
        judged = _judge_trial_beat(record, beat, clock) if own else clock.judge(record, beat)
        beat_names[trial_id] = name
        seen[trial_id] = Seen(record=record, judged=judged, beat=beat, at=time.monotonic())
    return watch_all(seen, lambda trial_id: _beat_of(directory, beat_names[trial_id]))


def _beat_of(directory: str, name: str) -> float | None:
    found = _read_beat(directory, name)
    return found[1] if found is not None else None


def stale_trials(running: Running, study_id: int, journal: str) -> list[int]:
    """The RUNNING trials of this study that their heartbeats prove abandoned."""
    mine = {tid: entry for tid, entry in running.items() if entry[0] == study_id}
    return sorted(tid for tid, j in judge_trials(journal, mine).items() if j.liveness in DEAD)


def prune(journal: str, running: Running) -> None:
    """Remove the files of workers proven dead that run nothing any more, and the beats of
    trials that finished long enough ago: a fleet restarted for weeks leaves files otherwise."""
    directory = heartbeat_dir(journal)
    try:
        names = [n for n in os.listdir(directory) if not n.endswith(".tmp")]
    except OSError:
        return
    busy = {worker for _, worker in running.values()}
    clock = _Clock(directory)
    for name in names:
        if name.startswith(TRIAL_PREFIX):
            gone = _finished_beat(directory, name, running, clock)
        elif name not in busy:
            found = _read_beat(directory, name)
            gone = found is not None and (clock.judge(found[0], found[1]).liveness in DEAD)
        else:
            gone = False
        if gone:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _finished_beat(directory: str, name: str, running: Running, clock: _Clock) -> bool:
    """A trial's beat whose trial is not RUNNING and has not been beaten for a grace period
    (a trial created after the journal was read may have just written its first beat)."""
    try:
        trial_id = int(name[len(TRIAL_PREFIX) :])
    except ValueError:
        return False
    if trial_id in running:
        return False
    found = _read_beat(directory, name)
    if found is None:
        return False
    now = clock.now(found[0])
    if now is None or clock.caching(found[0]):
        return False  # its age cannot be told here
    return now - found[1] > found[0].grace_period
