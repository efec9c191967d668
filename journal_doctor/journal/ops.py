"""Optuna's journal ops: what a sound op is, and how one line looks to Optuna's `json.loads`.

No optuna import: the rules mirror `JournalStorageReplayResult.apply_logs` (Optuna 5.0), and
`classify` mirrors `JournalFileBackend.read_logs` line by line.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_fast_loads: Callable[[bytes], Any]
try:
    # orjson parses a line ~6x faster. It accepts a subset of what json.loads accepts (strict
    # UTF-8, no NaN), so a line it rejects is judged again by json.loads, Optuna's own parser.
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency; stay correct without it
    _fast_loads = json.loads

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
# Optuna's `JournalOperation` codes, as plain ints: the hot path compares one per line.
(
    CREATE_STUDY,
    DELETE_STUDY,
    SET_STUDY_USER_ATTR,
    SET_STUDY_SYSTEM_ATTR,
    CREATE_TRIAL,
    SET_TRIAL_PARAM,
    SET_TRIAL_STATE_VALUES,
    SET_TRIAL_INTERMEDIATE_VALUE,
    SET_TRIAL_USER_ATTR,
    SET_TRIAL_SYSTEM_ATTR,
    DISCARD_TRIALS,
) = range(len(OP_NAMES))
# Keys whose absence makes Optuna's replay raise KeyError, by op code.
REQUIRED_KEYS: dict[int, tuple[str, ...]] = {
    CREATE_STUDY: ("worker_id", "study_name", "directions"),
    DELETE_STUDY: ("worker_id", "study_id"),
    SET_STUDY_USER_ATTR: ("worker_id", "study_id", "user_attr"),
    SET_STUDY_SYSTEM_ATTR: ("worker_id", "study_id", "system_attr"),
    CREATE_TRIAL: ("worker_id", "study_id", "datetime_start"),
    SET_TRIAL_PARAM: ("worker_id", "trial_id", "param_name", "param_value_internal",
                      "distribution"),
    SET_TRIAL_STATE_VALUES: ("worker_id", "trial_id", "state", "values"),
    SET_TRIAL_INTERMEDIATE_VALUE: ("worker_id", "trial_id", "step", "intermediate_value"),
    SET_TRIAL_USER_ATTR: ("worker_id", "trial_id", "user_attr"),
    SET_TRIAL_SYSTEM_ATTR: ("worker_id", "trial_id", "system_attr"),
    DISCARD_TRIALS: ("worker_id",),
}  # fmt: skip
# Frozen sets for the hot path: `REQUIRED_SETS[code] <= op.keys()` is one C call per line.
REQUIRED_SETS = {code: frozenset(keys) for code, keys in REQUIRED_KEYS.items()}
TRIAL_STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")
RUNNING, COMPLETE, PRUNED, FAIL, WAITING = range(5)
FINISHED = (COMPLETE, PRUNED, FAIL)
# Where a complete op can start inside a fused line (compact or spaced JSON).
_OP_START = re.compile(rb'\{\s*"op_code"\s*:')
# Every Optuna version writes "op_code" as the first key of every op (`_write_log`), compact or
# spaced; a power loss on the first write may leave NULs before it.
_JOURNAL_HEAD = re.compile(rb'\x00*[ \t\r]*\{\s*"op_code"\s*:\s*-?\d')


HEAD_BYTES = 4096  # what `is_journal_head` needs: any first line's start, after stray NULs


def is_journal_head(head: bytes) -> bool:
    """Is this the start of an Optuna journal? The rule for `check`, `repair`, `trials` and
    scan's journal discovery: a non-empty file is a journal when its first line begins with an
    op (`{"op_code": N`). A 2-line YAML file, a CSV, a log of text are not."""
    return _JOURNAL_HEAD.match(head) is not None


class Problem(str, enum.Enum):
    """What is wrong with one line of a journal (`Damage.problem`)."""

    TORN_TAIL = "torn-tail"  # bytes after the last newline
    FUSED = "fused"  # a fragment with a complete op glued on (salvageable)
    UNDECODABLE = "undecodable"  # JSONDecodeError: skipped when last, fatal when followed
    INVALID_UTF8 = "invalid-utf8"  # UnicodeDecodeError: fatal at once
    NOT_AN_OP = "not-an-op"  # valid JSON that breaks the replay
    OVERSIZED = "oversized"  # too long to decode in bounded memory


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


def op_name(code: int) -> str:
    """`SET_TRIAL_PARAM`, or `op 11` for one newer than this doctor knows."""
    return OP_NAMES[code] if 0 <= code < len(OP_NAMES) else f"op {code}"


def is_newer_op(code: Any) -> bool:
    """An op code past the ones this doctor knows: a newer Optuna's or Rustuna's. Optuna
    versions that do not know it cannot load the journal (`Should not reach.`), but it is no
    damage: whoever wrote it reads it."""
    return type(code) is int and code > DISCARD_TRIALS


def _op_problem(value: Any) -> str | None:
    """Why a decoded JSON value would break Optuna's replay, or None if it is a sound op."""
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object (TypeError in replay)"
    code = value.get("op_code")
    if code is None:
        return "no op_code (KeyError in replay)"
    if is_newer_op(code):
        return None  # a newer writer's: reported apart (check), kept (repair), never damage
    if type(code) is not int or code not in REQUIRED_KEYS:
        return f"unknown op_code {code!r} (AssertionError: Should not reach.)"
    for key in REQUIRED_KEYS[code]:
        if key not in value:
            return f"{OP_NAMES[code]} without {key!r} (KeyError in replay)"
    if code == SET_TRIAL_STATE_VALUES and value["state"] not in _STATES:
        return f"unknown trial state {value['state']!r} (ValueError in replay)"
    if code == SET_TRIAL_PARAM:
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


_STATES = frozenset(range(len(TRIAL_STATES)))


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
    if SET_TRIAL_PARAM <= code <= SET_TRIAL_STATE_VALUES and not _sound_detail(op, code):
        return None
    return op


def _sound_detail(op: dict[str, Any], code: int) -> bool:
    """The per-op checks beyond required keys, for the two ops that have them."""
    if code == SET_TRIAL_STATE_VALUES:
        return op["state"] in _STATES
    if code == SET_TRIAL_PARAM:
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
            f"a {start}-byte fragment with a complete {op_name(op['op_code'])} glued on",
            start,
        )
    return Classified(problem, None, detail)
