"""`check`: read a journal the way Optuna does, in O(1) memory, and say what Optuna will do with it.

No optuna import: the rules below mirror `JournalFileBackend.read_logs` and
`JournalStorageReplayResult.apply_logs` (Optuna 5.0):

- a last line without a newline is skipped (a torn write);
- a line that `json.loads` rejects with `JSONDecodeError` is skipped when it is the last line, and
  makes every load fail as soon as any line follows it;
- `UnicodeDecodeError` (invalid UTF-8, leading NULs that look like UTF-32) fails at once, even on
  the last line;
- valid JSON that is not an op (not an object, no `op_code`, a missing key) fails the replay;
  an op code past the ones known here (a newer writer's) is counted apart, never damage.

Trial and study ids are assigned by the order of CREATE ops, so the replay model here tracks
states in a bytearray indexed by trial id (one byte per trial) and details only for trials that
are still RUNNING or WAITING.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field

from ..errors import NoJournal, NotAJournal
from ..fsio import open_nonblocking
from ..model import Prognosis
from .lines import MAX_LINE, LineReader, batch_bytes
from .ops import (
    CREATE_STUDY,
    CREATE_TRIAL,
    DELETE_STUDY,
    DISCARD_TRIALS,
    HEAD_BYTES,
    SET_TRIAL_STATE_VALUES,
    TRIAL_STATES,
    Problem,
    classify,
    is_journal_head,
    is_newer_op,
    sound_op,
)
from .replay import OpenTrial, Replay

MAX_REPORTED = 1000  # damage entries kept in a report; all are counted
# The ops that change what check counts.
_REPLAYED = frozenset(
    {CREATE_STUDY, DELETE_STUDY, CREATE_TRIAL, SET_TRIAL_STATE_VALUES, DISCARD_TRIALS}
)
_NUL_RUN = re.compile(rb"\x00+")


@dataclass(frozen=True)
class Damage:
    problem: Problem
    line: int  # 1-based journal line number
    offset: int  # byte offset of the line in the file
    length: int  # bytes, newline included
    detail: str
    salvage_offset: int | None = None  # FUSED: where the complete op starts in the line


@dataclass(frozen=True)
class JournalHealth:
    path: str
    size: int
    lines: int
    ops: int
    studies: int
    trials_by_state: dict[str, int]
    torn_tail_bytes: int
    nul_bytes: int
    nul_runs: int
    damage: tuple[Damage, ...]  # the first MAX_REPORTED
    damage_count: int
    prognosis: Prognosis
    summary: str
    open_trials: tuple[OpenTrial, ...]
    # Trials a DISCARD_TRIALS op (op 10, Rustuna's `discard_trials()`) named: Optuna 5 lists
    # them as they were, Rustuna (`apply_discard=True`) leaves them out, Optuna < 5 cannot load
    # the journal. Counted in `trials_by_state` as Optuna 5 sees them.
    discarded_trials: int = 0
    # Ops with an op code newer than this doctor knows, by code: kept, never damage.
    newer_ops: dict[int, int] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.damage_count == 0


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def open_journal(path: str, follow_symlinks: bool = True) -> tuple[int, os.stat_result]:
    """Open a journal for reading without blocking (a FIFO opens at once with O_NONBLOCK and is
    then refused); with follow_symlinks=False a symlink is refused too (O_NOFOLLOW)."""
    flags = os.O_RDONLY
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = open_nonblocking(path, flags)
    except FileNotFoundError:
        raise NoJournal(path) from None
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_symlinks:
            raise NotAJournal(
                f"{path}: is a symbolic link; give the journal file itself"
                f" ({os.path.realpath(path)})"
            ) from None
        if err.errno == errno.ENXIO:
            raise NotAJournal(f"{path}: is a socket, not a journal file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise NotAJournal(f"{path}: is {kind}, not a journal file; give an Optuna journal")
    return fd, st


def _prognosis_sentence(prognosis: Prognosis, first: Damage | None, size: int) -> str:
    if prognosis is Prognosis.LOADS:
        return "Optuna loads this journal." if size else "An empty journal: Optuna loads it."
    assert first is not None
    where = f"line {first.line} (byte {first.offset})"
    if prognosis is Prognosis.NEXT_WORKER_CRASHES:
        if first.problem is Problem.TORN_TAIL:
            return (
                f"Optuna loads it for now (it skips the torn last line at {where}), but the next"
                " worker's write is glued onto the fragment and lost, that worker crashes, and"
                " after one more write every load fails: run `journal-doctor repair`."
            )
        return (
            f"Optuna loads it for now (it skips the bad last line at {where}), but after the next"
            " write every load fails: run `journal-doctor repair`."
        )
    return f"Every load fails (first at {where}: {first.detail}): run `journal-doctor repair`."


def _not_a_journal(path: str, fd: int, st: os.stat_result) -> None:
    """Refuse anything that is not an Optuna journal before reading (or, later, writing) it."""
    if st.st_size and not is_journal_head(os.pread(fd, HEAD_BYTES, 0)):
        os.close(fd)
        raise NotAJournal(
            f"{path}: not an Optuna journal (its first line is not an Optuna op); give the"
            " journal file of a JournalStorage."
        )


@dataclass
class _Tally:
    """What one pass over a journal found: counters, damage, and the prognosis they imply."""

    lines: int = 0
    ops: int = 0
    offset: int = 0
    torn: int = 0
    nul_bytes: int = 0
    nul_runs: int = 0
    count: int = 0
    damage: list[Damage] = field(default_factory=list)
    first_fatal: Damage | None = None
    pending_skippable: Damage | None = None  # a skippable bad line: fatal if anything follows
    newer_ops: dict[int, int] = field(default_factory=dict)  # op code -> count

    def record(self, item: Damage, raw: bytes | None) -> None:
        if raw is not None and b"\x00" in raw:
            for run in _NUL_RUN.finditer(raw):
                self.nul_runs += 1
                self.nul_bytes += run.end() - run.start()
        self.count += 1
        if len(self.damage) < MAX_REPORTED:
            self.damage.append(item)

    def another_line(self) -> None:
        """A line follows: a pending skippable bad line is now fatal to every load."""
        if self.pending_skippable is not None:
            if self.first_fatal is None:
                self.first_fatal = self.pending_skippable
            self.pending_skippable = None

    def bad(self, item: Damage, raw: bytes | None, skippable: bool) -> None:
        if skippable:
            self.pending_skippable = item
        elif self.first_fatal is None:
            self.first_fatal = item
        self.record(item, raw)

    @property
    def prognosis(self) -> Prognosis:
        if self.first_fatal is not None:
            return Prognosis.EVERY_LOAD_FAILS
        return Prognosis.NEXT_WORKER_CRASHES if self.damage else Prognosis.LOADS

    @property
    def first(self) -> Damage | None:
        return self.first_fatal or (self.damage[0] if self.damage else None)


def _judge_slowly(tally: _Tally, replay: Replay, part: bytes | int, number: int, at: int) -> None:
    """A line that is not a plainly sound op: oversized, damaged, or only orjson's no."""
    if type(part) is int:
        detail = f"a line of {part + 1} bytes, longer than {MAX_LINE} (not decoded)"
        tally.bad(Damage(Problem.OVERSIZED, number, at, part + 1, detail), None, skippable=True)
        return
    assert isinstance(part, bytes)
    judged = classify(part + b"\n")
    if judged.problem is None:
        assert judged.op is not None
        tally.ops += 1
        code = judged.op["op_code"]
        if is_newer_op(code):
            tally.newer_ops[code] = tally.newer_ops.get(code, 0) + 1
        replay.apply(judged.op, number)
        return
    item = Damage(judged.problem, number, at, len(part) + 1, judged.detail, judged.salvage_offset)
    tally.bad(item, part, judged.skippable)


def _read(fd: int, tally: _Tally, replay: Replay) -> None:
    reader = LineReader(fd)
    replayed, apply = _REPLAYED, replay.apply
    for batch in reader:
        for index, part in enumerate(batch):
            tally.another_line()
            # Hot path: a plainly sound op. Anything else (and any line orjson rejects) is
            # judged again by classify(), exactly as Optuna would.
            if type(part) is bytes:
                op = sound_op(part)
                if op is not None:
                    tally.ops += 1
                    if op["op_code"] in replayed:
                        apply(op, tally.lines + index + 1)
                    continue
            at = tally.offset + batch_bytes(batch, index)
            _judge_slowly(tally, replay, part, tally.lines + index + 1, at)
        tally.lines += len(batch)
        tally.offset += batch_bytes(batch, len(batch))
    if reader.tail_length:
        tally.lines += 1
        if tally.pending_skippable is not None and tally.first_fatal is None:
            tally.first_fatal = tally.pending_skippable
        tally.torn = torn = reader.tail_length
        item = Damage(Problem.TORN_TAIL, tally.lines, tally.offset, torn,
                      f"{torn} bytes after the last newline")  # fmt: skip
        tally.record(item, reader.tail)


def check_journal(
    path: str | os.PathLike[str], *, open_trials: bool = False, follow_symlinks: bool = True
) -> JournalHealth:
    """Stream `path` once and report its health.

    Raises NotAJournal for anything but an Optuna journal, OSError for unreadable paths. Memory
    is bounded by one line (at most MAX_LINE) and one byte per trial; `open_trials=True` also
    keeps the details of every RUNNING/WAITING trial (for `trials`).
    """
    path = os.fspath(path)
    fd, st = open_journal(path, follow_symlinks)
    _not_a_journal(path, fd, st)
    tally, replay = _Tally(), Replay(track_open=open_trials)
    try:
        _read(fd, tally, replay)
    finally:
        os.close(fd)
    return JournalHealth(
        path=path,
        size=st.st_size,
        lines=tally.lines,
        ops=tally.ops,
        studies=len(replay.alive),
        trials_by_state={name: replay.states.count(i) for i, name in enumerate(TRIAL_STATES)},
        torn_tail_bytes=tally.torn,
        nul_bytes=tally.nul_bytes,
        nul_runs=tally.nul_runs,
        damage=tuple(tally.damage),
        damage_count=tally.count,
        prognosis=tally.prognosis,
        summary=_summary(tally, replay, st.st_size),
        open_trials=replay.open_trials(),
        discarded_trials=len(replay.discarded),
        newer_ops=dict(sorted(tally.newer_ops.items())),
    )


def _summary(tally: _Tally, replay: Replay, size: int) -> str:
    """What Optuna does with the journal; then who reads what of discarded trials and newer
    ops, which are no damage but not every reader knows them."""
    sentences = [_prognosis_sentence(tally.prognosis, tally.first, size)]
    if tally.newer_ops and tally.prognosis is Prognosis.LOADS:
        sentences = ["No damage."]  # but not every Optuna loads it: said below
    if replay.discarded:
        sentences.append(
            f"{len(replay.discarded)} trial(s) discarded (op 10, Rustuna's discard_trials):"
            " Optuna 5 lists them as they were, Rustuna with apply_discard=True leaves them"
            " out, Optuna before 5.0 cannot load this journal."
        )
    if tally.newer_ops:
        codes = ", ".join(str(code) for code in sorted(tally.newer_ops))
        count = sum(tally.newer_ops.values())
        sentences.append(
            f"{count} op(s) with an op code this doctor does not know ({codes}), from a newer"
            " writer: kept as they are; an Optuna that does not know them cannot load this"
            " journal."
        )
    return " ".join(sentences)
