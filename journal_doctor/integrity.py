"""`check`: read a journal the way Optuna does, in O(1) memory, and say what Optuna will do with it.

No optuna import: the rules below mirror `JournalFileBackend.read_logs` and
`JournalStorageReplayResult.apply_logs` (Optuna 5.0):

- a last line without a newline is skipped (a torn write);
- a line that `json.loads` rejects with `JSONDecodeError` is skipped when it is the last line, and
  makes every load fail as soon as any line follows it;
- `UnicodeDecodeError` (invalid UTF-8, leading NULs that look like UTF-32) fails at once, even on
  the last line;
- valid JSON that is not an op (not an object, no `op_code`, an unknown op code, a missing key)
  fails the replay.

Trial and study ids are assigned by the order of CREATE ops, so the replay model here tracks
states in a bytearray indexed by trial id (one byte per trial) and details only for trials that
are still RUNNING or WAITING.
"""

from __future__ import annotations

import enum
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import DoctorError

_fast_loads: Callable[[bytes], Any]
try:
    # orjson parses a line ~6x faster. It accepts a subset of what json.loads accepts (strict
    # UTF-8, no NaN), so a line it rejects is judged again by json.loads, Optuna's own parser.
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency; stay correct without it
    _fast_loads = json.loads

CHUNK = 1 << 20
MAX_LINE = 16 << 20  # longer lines are not decoded (bounded memory); real ops are < 1 MiB
MAX_REPORTED = 1000  # damage entries kept in a report; all are counted

OP_NAMES = (
    "CREATE_STUDY",
    "DELETE_STUDY",
    "SET_STUDY_USER_ATTR",
    "SET_STUDY_SYSTEM_ATTR",
    "CREATE_TRIAL",
    "SET_TRIAL_PARAM",
    "SET_TRIAL_STATE_VALUES",
    "SET_TRIAL_INTERMEDIATE_VALUE",
    "SET_TRIAL_USER_ATTR",
    "SET_TRIAL_SYSTEM_ATTR",
    "DISCARD_TRIALS",
)
# Keys whose absence makes Optuna's replay raise KeyError, by op code.
REQUIRED_KEYS: dict[int, tuple[str, ...]] = {
    0: ("worker_id", "study_name", "directions"),
    1: ("worker_id", "study_id"),
    2: ("worker_id", "study_id", "user_attr"),
    3: ("worker_id", "study_id", "system_attr"),
    4: ("worker_id", "study_id", "datetime_start"),
    5: ("worker_id", "trial_id", "param_name", "param_value_internal", "distribution"),
    6: ("worker_id", "trial_id", "state", "values"),
    7: ("worker_id", "trial_id", "step", "intermediate_value"),
    8: ("worker_id", "trial_id", "user_attr"),
    9: ("worker_id", "trial_id", "system_attr"),
    10: ("worker_id",),
}
# Frozen sets for the hot path: `REQUIRED_SETS[code] <= op.keys()` is one C call per line.
REQUIRED_SETS = {code: frozenset(keys) for code, keys in REQUIRED_KEYS.items()}
_REPLAYED = frozenset({0, 1, 4, 6})  # the ops that change what check counts
TRIAL_STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")
RUNNING, COMPLETE, PRUNED, FAIL, WAITING = range(5)
_FINISHED = (COMPLETE, PRUNED, FAIL)
# Where a complete op can start inside a fused line (compact or spaced JSON).
_OP_START = re.compile(rb'\{\s*"op_code"\s*:')
_NUL_RUN = re.compile(rb"\x00+")


class Problem(str, enum.Enum):
    TORN_TAIL = "torn-tail"  # bytes after the last newline
    FUSED = "fused"  # a fragment with a complete op glued on (salvageable)
    UNDECODABLE = "undecodable"  # JSONDecodeError: skipped when last, fatal when followed
    INVALID_UTF8 = "invalid-utf8"  # UnicodeDecodeError: fatal at once
    NOT_AN_OP = "not-an-op"  # valid JSON that breaks the replay
    OVERSIZED = "oversized"  # too long to decode in bounded memory


class Prognosis(str, enum.Enum):
    LOADS = "loads"
    NEXT_WORKER_CRASHES = "next-worker-crashes"
    EVERY_LOAD_FAILS = "every-load-fails"


@dataclass(frozen=True)
class Damage:
    problem: Problem
    line: int  # 1-based journal line number
    offset: int  # byte offset of the line in the file
    length: int  # bytes, newline included
    detail: str
    salvage_offset: int | None = None  # FUSED: where the complete op starts in the line


@dataclass(frozen=True)
class OpenTrial:
    """A trial still RUNNING or WAITING at the end of the journal."""

    trial_id: int
    study_id: int
    study_name: str
    number: int
    state: str
    worker_id: str
    datetime_start: str | None
    line: int
    abandoned: bool  # its worker later started another trial: certainly nobody runs it


@dataclass(frozen=True)
class Classified:
    """One complete line, as Optuna would see it."""

    problem: Problem | None
    op: dict[str, Any] | None  # the op (salvaged one for FUSED)
    detail: str = ""
    salvage_offset: int | None = None

    @property
    def skippable(self) -> bool:
        """Skipped by Optuna when it is the last line (JSONDecodeError)."""
        return self.problem in (Problem.UNDECODABLE, Problem.FUSED, Problem.OVERSIZED)


def _op_problem(value: Any) -> str | None:
    """Why a decoded JSON value would break Optuna's replay, or None if it is a sound op."""
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object (TypeError in replay)"
    code = value.get("op_code")
    if code is None:
        return "no op_code (KeyError in replay)"
    if type(code) is not int or code not in REQUIRED_KEYS:
        return f"unknown op_code {code!r} (AssertionError: Should not reach.)"
    for key in REQUIRED_KEYS[code]:
        if key not in value:
            return f"{OP_NAMES[code]} without {key!r} (KeyError in replay)"
    if code == 6 and value["state"] not in range(5):
        return f"unknown trial state {value['state']!r} (ValueError in replay)"
    if code == 5:
        return _distribution_problem(value["distribution"])
    return None


_SOUND_DISTRIBUTIONS: set[str] = (
    set()
)  # a study repeats a handful of distributions millions of times


def _distribution_problem(distribution: Any) -> str | None:
    if distribution in _SOUND_DISTRIBUTIONS:
        return None
    try:
        dist = json.loads(distribution)
    except (TypeError, ValueError):
        return "a distribution that is not a JSON string (error in replay)"
    if not isinstance(dist, dict) or ("name" not in dist and "type" not in dist):
        return "a distribution without name/type (KeyError('type') in replay)"
    if len(_SOUND_DISTRIBUTIONS) < 4096:
        _SOUND_DISTRIBUTIONS.add(distribution)
    return None


_STATES = frozenset(range(5))


def sound_op(line: bytes) -> dict[str, Any] | None:
    """The op on a line if it is plainly sound, in a few C calls; None means "ask classify()"
    (which mirrors Optuna exactly), not "damaged". The hot path of `check`."""
    try:
        op = _fast_loads(line)
    except ValueError:
        return None
    if type(op) is not dict:
        return None
    code = op.get("op_code")
    if type(code) is not int:
        return None
    required = REQUIRED_SETS.get(code)
    if required is None or not required <= op.keys():
        return None
    if 5 <= code <= 6 and not _sound_detail(op, code):
        return None
    return op


def _sound_detail(op: dict[str, Any], code: int) -> bool:
    """The per-op checks beyond required keys, for the two ops that have them."""
    if code == 6:
        return op["state"] in _STATES
    if code == 5:
        distribution = op["distribution"]
        return type(distribution) is str and (
            distribution in _SOUND_DISTRIBUTIONS or _distribution_problem(distribution) is None
        )
    return True


def _salvage(line: bytes) -> tuple[int, dict[str, Any]] | None:
    for match in _OP_START.finditer(line, 1):
        try:
            value = json.loads(line[match.start() :])
        except (ValueError, RecursionError):
            continue
        if _op_problem(value) is None:
            return match.start(), value
    return None


def classify(line: bytes) -> Classified:
    """Judge one complete line (with its newline) exactly as Optuna's `json.loads(line)` would."""
    try:
        value = json.loads(line)
    except UnicodeDecodeError as err:
        problem, detail = Problem.INVALID_UTF8, f"UnicodeDecodeError: {err.reason}"
        if line.startswith(b"\x00"):
            detail = "leading NUL bytes (UnicodeDecodeError)"
    except (ValueError, RecursionError) as err:
        problem, detail = Problem.UNDECODABLE, f"{type(err).__name__}: {err}"
    else:
        why = _op_problem(value)
        if why is None:
            return Classified(None, value)
        return Classified(Problem.NOT_AN_OP, None, why)
    salvaged = _salvage(line)
    if salvaged is not None:
        start, op = salvaged
        return Classified(
            Problem.FUSED,
            op,
            f"a {start}-byte fragment with a complete {OP_NAMES[op['op_code']]} glued on",
            start,
        )
    return Classified(problem, None, detail)


class LineReader:
    """Complete lines of a file in batches (one per chunk read), in bounded memory.

    Batch items are a complete line without its newline, or an int: the length (without the
    newline) of a line longer than `max_line`, which is not kept. After the batches are
    exhausted, `tail` holds the bytes after the last newline (or `tail_length` alone if that
    is oversized too).
    """

    def __init__(self, fd: int, chunk: int = CHUNK, max_line: int = MAX_LINE) -> None:
        self.fd = fd
        self.chunk = chunk
        self.max_line = max_line
        self.tail: bytes | None = b""
        self.tail_length = 0

    def __iter__(self) -> Iterator[list[bytes | int]]:
        pending = bytearray()  # the unfinished last line, grown in place (no quadratic copies)
        overflow = 0  # length so far of an oversized line being skipped
        while True:
            data = os.read(self.fd, self.chunk)
            if not data:
                break
            newline = data.find(b"\n")
            if newline < 0:
                if overflow:
                    overflow += len(data)
                elif len(pending) + len(data) > self.max_line:
                    overflow, pending = len(pending) + len(data), bytearray()
                else:
                    pending += data
                continue
            batch: list[bytes | int] = []
            if overflow:
                batch.append(overflow + newline)
                overflow = 0
            else:
                batch.append(bytes(pending) + data[:newline] if pending else data[:newline])
            pending = bytearray()
            parts = data[newline + 1 :].split(b"\n")
            pending += parts.pop()
            batch.extend(parts)
            yield batch
        if overflow:
            self.tail, self.tail_length = None, overflow
        else:
            self.tail, self.tail_length = bytes(pending), len(pending)


def _batch_bytes(batch: list[bytes | int], end: int) -> int:
    """Bytes taken by the first `end` lines of a batch, newlines included."""
    try:
        return sum(map(len, batch[:end])) + end  # type: ignore[arg-type]
    except TypeError:  # an oversized line (an int) in the batch
        return sum(p if isinstance(p, int) else len(p) for p in batch[:end]) + end


def iter_lines(
    fd: int, chunk: int = CHUNK, max_line: int = MAX_LINE
) -> Iterator[tuple[int, bytes | None, int, bool]]:
    """(offset, line, length, complete) for each line of the file, in bounded memory.

    A complete line keeps its newline, exactly as Optuna's `for line in f` hands it to
    `json.loads` (which matters: the newline can decide whether NULs decode as UTF-32). The
    line is None when it is longer than `max_line` (only its length is known then).
    """
    reader = LineReader(fd, chunk, max_line)
    offset = 0
    for batch in reader:
        for part in batch:
            if type(part) is int:
                yield offset, None, part + 1, True
                offset += part + 1
            else:
                assert isinstance(part, bytes)
                yield offset, part + b"\n", len(part) + 1, True
                offset += len(part) + 1
    if reader.tail_length:
        yield offset, reader.tail, reader.tail_length, False


@dataclass
class _Replay:
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
                self.open[tid] = [sid, number, state, worker, op["datetime_start"], line]
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
            )
            for tid, (sid, number, state, worker, start, line) in sorted(self.open.items())
        )


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

    @property
    def healthy(self) -> bool:
        return self.damage_count == 0


class NotAJournal(DoctorError):
    """The path is not a regular file (a directory, FIFO, device, socket, or a symlink where
    one is not allowed)."""

    exit_code = 2


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
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
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


def check_journal(
    path: str,
    on_progress: Callable[[int], None] | None = None,
    *,
    open_trials: bool = False,
    follow_symlinks: bool = True,
) -> JournalHealth:
    """Stream `path` once and report its health. Raises OSError for unreadable paths.

    Memory is bounded by one line (at most MAX_LINE) and one byte per trial; `open_trials=True`
    also keeps the details of every RUNNING/WAITING trial (for `trials`).
    """
    fd, st = open_journal(path, follow_symlinks)
    replay = _Replay(track_open=open_trials)
    damage: list[Damage] = []
    count = lines = ops = nul_bytes = nul_runs = torn = offset = 0
    prognosis = Prognosis.LOADS
    first_fatal: Damage | None = None
    pending_skippable: Damage | None = None  # a skippable bad line; fatal if anything follows
    replayed, apply = _REPLAYED, replay.apply

    def record(item: Damage, raw: bytes | None) -> None:
        nonlocal count, nul_runs, nul_bytes
        if raw is not None and b"\x00" in raw:
            for run in _NUL_RUN.finditer(raw):
                nul_runs += 1
                nul_bytes += run.end() - run.start()
        count += 1
        if len(damage) < MAX_REPORTED:
            damage.append(item)

    def judge_slowly(part: bytes | int, number: int, at: int) -> None:
        """A line that is not a plainly sound op: oversized, damaged, or only orjson's no."""
        nonlocal pending_skippable, first_fatal, ops
        if type(part) is int:
            item = Damage(
                Problem.OVERSIZED,
                number,
                at,
                part + 1,
                f"a line of {part + 1} bytes, longer than {MAX_LINE} (not decoded)",
            )
            pending_skippable = item
            record(item, None)
            return
        assert isinstance(part, bytes)
        verdict = classify(part + b"\n")
        if verdict.problem is None:
            assert verdict.op is not None
            ops += 1
            apply(verdict.op, number)
            return
        item = Damage(
            verdict.problem, number, at, len(part) + 1, verdict.detail, verdict.salvage_offset
        )
        if verdict.skippable:
            pending_skippable = item
        elif first_fatal is None:
            first_fatal = item
        record(item, part)

    reader = LineReader(fd)
    try:
        for batch in reader:
            if on_progress is not None:
                on_progress(offset)
            for index, part in enumerate(batch):
                if pending_skippable is not None:  # a bad line followed by another: fatal
                    if first_fatal is None:
                        first_fatal = pending_skippable
                    pending_skippable = None
                # Hot path: a plainly sound op. Anything else (and any line orjson rejects) is
                # judged again by classify(), exactly as Optuna would.
                if type(part) is bytes:
                    op = sound_op(part)
                    if op is not None:
                        ops += 1
                        if op["op_code"] in replayed:
                            apply(op, lines + index + 1)
                        continue
                judge_slowly(part, lines + index + 1, offset + _batch_bytes(batch, index))
            lines += len(batch)
            offset += _batch_bytes(batch, len(batch))
        if reader.tail_length:
            lines += 1
            if pending_skippable is not None and first_fatal is None:
                first_fatal = pending_skippable
            torn = reader.tail_length
            item = Damage(
                Problem.TORN_TAIL, lines, offset, torn, f"{torn} bytes after the last newline"
            )
            record(item, reader.tail)
    finally:
        os.close(fd)
    if first_fatal is not None:
        prognosis = Prognosis.EVERY_LOAD_FAILS
    elif damage:
        prognosis = Prognosis.NEXT_WORKER_CRASHES
    first = first_fatal or (damage[0] if damage else None)
    by_state = {name: replay.states.count(i) for i, name in enumerate(TRIAL_STATES)}
    return JournalHealth(
        path=path,
        size=st.st_size,
        lines=lines,
        ops=ops,
        studies=len(replay.alive),
        trials_by_state=by_state,
        torn_tail_bytes=torn,
        nul_bytes=nul_bytes,
        nul_runs=nul_runs,
        damage=tuple(damage),
        damage_count=count,
        prognosis=prognosis,
        summary=_prognosis_sentence(prognosis, first, st.st_size),
        open_trials=replay.open_trials(),
    )


TAIL_PROBE = 64 << 10


def health_of_tail(tail: bytes, size: int) -> str:
    """A cheap verdict on a journal's last bytes for `scan`: ok, empty, torn-tail, nul-tail,
    bad-tail. `check` reads the whole file."""
    if size == 0:
        return "empty"
    if b"\x00" in tail:
        return "nul-tail"
    if not tail.endswith(b"\n"):
        return "torn-tail"
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    if len(last) == len(tail) - 1 and size > len(tail):
        return "ok"  # the last line is longer than the probe: not judged here
    sound = sound_op(last) is not None
    return "ok" if sound or classify(last + b"\n").problem is None else "bad-tail"
