"""`migrate`: move studies off a file journal to a database, checked before, verified after.

Before: the journal must be an Optuna journal, healthy, and not in use (the same rule as
`repair`: no lock but an orphaned one, no process with it open), and no study of the same name
may exist in the target. Then each study is copied as `optuna.copy_study` copies it (directions,
study attrs, every trial in order through `create_new_trial(template_trial=...)`: number, state
including RUNNING and WAITING, params and distributions, values, intermediate values, attrs,
times), with a progress callback. After: both sides are loaded again and compared trial by
trial, numbers as numbers (SQL keeps no -0.0), times to the second (MySQL keeps whole seconds).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

from ..errors import DoctorError, Refused, UsageError
from .check import check_journal
from .in_use import refuse_if_in_use
from .optuna_api import file_backend_class, journal_storage_class

Progress = Callable[[int, int], None]  # (trials copied, trials in all)
DRIVERS = {  # URL scheme prefix -> (module, the extra that installs it)
    "postgresql+psycopg2": ("psycopg2", "postgres"),
    "postgresql+psycopg": ("psycopg", "postgres"),
    "postgresql": ("psycopg2", "postgres"),
    "mysql+pymysql": ("pymysql", "mysql"),
    "mysql": ("MySQLdb", "mysql"),
    "redis": ("redis", "redis"),
}


class StudyCopy(NamedTuple):
    name: str
    trials_by_state: dict[str, int]


class MigrateReport(NamedTuple):
    journal: str
    url: str
    studies: tuple[StudyCopy, ...]
    performed: bool
    difference: str | None  # the first difference found by the verification, or None
    storage_line: str  # what the training script uses from now on
    elapsed_seconds: float

    @property
    def verified(self) -> bool:
        return self.performed and self.difference is None


def storage_line(url: str) -> str:
    if url.startswith("redis"):
        return (
            "storage = optuna.storages.JournalStorage(optuna.storages.journal."
            f"JournalRedisBackend({url!r}))"
        )
    return f"storage = optuna.storages.RDBStorage({url!r})"


def _check_driver(url: str) -> None:
    scheme = url.split("://", 1)[0]
    module, extra = next(
        (found for prefix, found in DRIVERS.items() if scheme == prefix), (None, None)
    )
    if module is None:
        return
    try:
        __import__(module)
    except ImportError:
        raise DoctorError(
            f"{scheme}: the driver {module} is not installed: pip install 'journal-doctor[{extra}]'"
        ) from None


def target_storage(url: str, *, create: bool = True) -> Any:
    """The target: an RDB URL Optuna accepts, or redis://HOST:PORT/DB (JournalRedisBackend)."""
    _check_driver(url)
    import optuna

    if url.startswith(("redis://", "rediss://", "unix://")):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(url))
    return optuna.storages.RDBStorage(url, skip_table_creation=not create)


def _source(journal: str) -> Any:
    return journal_storage_class()(file_backend_class()(journal))


def _target_names(url: str, dry_run: bool) -> set[str]:
    """Study names already in the target. A dry run creates nothing there (no tables, no
    SQLite file)."""
    if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
        return set()
    try:
        target = target_storage(url, create=not dry_run)
        return {s.study_name for s in target.get_all_studies()}
    except DoctorError:
        raise
    except Exception as err:  # a dry run on a database without Optuna's tables yet
        if dry_run:
            return set()
        raise DoctorError(f"{url}: cannot use it: {type(err).__name__}: {err}") from None


def migrate(
    journal: str,
    url: str,
    *,
    studies: Iterable[str] = (),
    dry_run: bool = False,
    progress: Progress | None = None,
) -> MigrateReport:
    """Copy the journal's studies (or those named) to `url` and verify the copy."""
    started = time.monotonic()
    health = check_journal(journal)
    if not health.healthy:
        raise Refused(f"{journal}: damaged ({health.summary}) Run `journal-doctor repair` first.")
    refuse_if_in_use(journal, os.stat(journal), "migrate")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source = _source(journal)
    names = _chosen(source, tuple(studies), journal)
    clash = sorted(set(names) & _target_names(url, dry_run))
    if clash:
        raise Refused(f"{url}: already has a study named {clash[0]!r}; nothing was copied.")
    copies = tuple(StudyCopy(name, _by_state(source, name)) for name in names)
    if dry_run:
        return MigrateReport(journal, url, copies, False, None, storage_line(url), 0.0)
    target = target_storage(url)
    total = sum(sum(c.trials_by_state.values()) for c in copies)
    done = 0
    for name in names:
        done = _copy(source, target, name, done, total, progress)
    # The journal's replay is reused (one replay in memory, as copy_study holds); the target
    # is read afresh, so what is compared is what the database really holds.
    difference = verify(source, url, names)
    elapsed = time.monotonic() - started
    return MigrateReport(journal, url, copies, True, difference, storage_line(url), elapsed)


def _chosen(source: Any, wanted: tuple[str, ...], journal: str) -> list[str]:
    names = [s.study_name for s in source.get_all_studies()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise UsageError(f"{journal}: no study named {unknown[0]!r}; it has {names}")
    return list(wanted) or names


def _by_state(source: Any, name: str) -> dict[str, int]:
    import optuna

    counts: dict[str, int] = {}
    for trial in optuna.load_study(study_name=name, storage=source).get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _copy(source: Any, target: Any, name: str, done: int, total: int,
          progress: Progress | None) -> int:  # fmt: skip
    """optuna.copy_study, one trial at a time so that progress can be told."""
    import optuna

    original = optuna.load_study(study_name=name, storage=source)
    copy = optuna.create_study(study_name=name, storage=target,
                               directions=original.directions)  # fmt: skip
    for key, value in source.get_study_system_attrs(original._study_id).items():
        target.set_study_system_attr(copy._study_id, key, value)
    for key, value in original.user_attrs.items():
        copy.set_user_attr(key, value)
    for trial in original.get_trials(deepcopy=False):
        target.create_new_trial(copy._study_id, template_trial=trial)
        done += 1
        if progress is not None and (done % 100 == 0 or done == total):
            progress(done, total)
    return done


def verify(source: Any, url: str, names: Iterable[str]) -> str | None:
    """The journal's studies (as `source` replayed them) and the target's, read afresh,
    compared trial by trial; the first difference, or None."""
    import optuna

    target = target_storage(url)
    for name in names:
        a = optuna.load_study(study_name=name, storage=source)
        b = optuna.load_study(study_name=name, storage=target)
        if a.directions != b.directions:
            return f"study {name!r}: directions {a.directions} != {b.directions}"
        if a.user_attrs != b.user_attrs:
            return f"study {name!r}: user attrs differ"
        left, right = a.get_trials(deepcopy=False), b.get_trials(deepcopy=False)
        if len(left) != len(right):
            return f"study {name!r}: {len(left)} trials in the journal, {len(right)} copied"
        for x, y in zip(left, right, strict=True):
            why = trial_difference(x, y)
            if why:
                return f"study {name!r}, trial {x.number}: {why}"
    return None


def trial_difference(a: Any, b: Any) -> str | None:
    checks: tuple[tuple[str, Any, Any], ...] = (
        ("number", a.number, b.number),
        ("state", a.state, b.state),
        ("params", a.params, b.params),
        ("distributions", a.distributions, b.distributions),
        ("values", a.values, b.values),
        ("intermediate values", a.intermediate_values, b.intermediate_values),
        ("user attrs", a.user_attrs, b.user_attrs),
        ("system attrs", a.system_attrs, b.system_attrs),
    )
    for what, left, right in checks:
        if not same(left, right):
            return f"{what}: {left!r} != {right!r}"
    for what, left, right in (("start", a.datetime_start, b.datetime_start),
                              ("complete", a.datetime_complete, b.datetime_complete)):  # fmt: skip
        if not same_time(left, right):
            return f"datetime_{what}: {left} != {right}"
    return None


def same(a: Any, b: Any) -> bool:
    """Equal, numbers compared as numbers (-0.0 == 0.0, NaN == NaN, 1 == 1.0)."""
    if (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not (isinstance(a, bool) or isinstance(b, bool))
    ):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def same_time(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a.replace(tzinfo=None) - b.replace(tzinfo=None)).total_seconds() < 1.0
