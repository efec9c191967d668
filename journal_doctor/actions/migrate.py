"""`migrate`: move studies off a file journal to a database, checked before, verified after.

Before: the journal must be an Optuna journal, healthy, and not in use (the same rule as
`repair`: no lock but an orphaned one, no process with it open), and no study of the same name
may exist in the target. Then each study gets what `optuna.copy_study` copies (directions,
study attrs, every trial in order: number, state including RUNNING and WAITING, params and
distributions, values, intermediate values, attrs, times), a batch of trials per transaction
into a database (`rdb_batch`), trial by trial through the public API elsewhere, with a progress
callback. After: the target is read afresh and compared with the journal's replay trial by
trial, numbers as numbers (SQL keeps no -0.0), times to the second (MySQL keeps whole seconds).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import zip_longest
from typing import Any

from ..errors import DoctorError, Interrupted, Refused, UsageError
from ..journal.check import check_journal
from ..journal.optuna_api import file_backend_class, journal_storage_class
from . import rdb_batch
from .in_use import refuse_if_in_use

Progress = Callable[[int, int], None]  # (trials copied, trials in all)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
DRIVERS = {  # URL scheme prefix -> (module, the extra that installs it)
    "postgresql+psycopg2": ("psycopg2", "postgres"),
    "postgresql+psycopg": ("psycopg", "postgres"),
    "postgresql": ("psycopg2", "postgres"),
    "mysql+pymysql": ("pymysql", "mysql"),
    "mysql": ("MySQLdb", "mysql"),
    "redis": ("redis", "redis"),
}


@dataclass(frozen=True, kw_only=True)
class StudyCopy:
    name: str
    trials_by_state: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class MigrateReport:
    journal: str
    url: str
    studies: tuple[StudyCopy, ...]
    performed: bool
    difference: str | None  # the first difference found by the verification, or None
    storage_line: str  # what the training script uses from now on
    elapsed_seconds: float
    # Trials a DISCARD_TRIALS op named (Rustuna's op 10): a database has no discard, so they
    # are copied as Optuna reads them (their state), and verified so.
    discarded_trials: int = 0

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

    if url.startswith(REDIS_SCHEMES):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(url))
    return optuna.storages.RDBStorage(url, skip_table_creation=not create)


def _source(journal: str) -> Any:
    return journal_storage_class()(file_backend_class()(journal))


def _target_names(url: str, dry_run: bool) -> set[str]:
    """Study names already in the target, read as the copy would reach it: an unreachable
    server, bad credentials or a path that cannot be a database fail the dry run as they fail
    the copy. A dry run creates nothing there (no tables, no SQLite file)."""
    if url.startswith("sqlite:///") and not _sqlite_usable(url[len("sqlite:///") :]):
        return set()  # not made yet: the copy makes it
    try:
        if dry_run and not url.startswith(REDIS_SCHEMES) and not _has_optuna_tables(url):
            return set()  # reachable, and empty of Optuna: the copy creates its tables
        target = target_storage(url, create=not dry_run)
        return {s.study_name for s in target.get_all_studies()}
    except DoctorError:
        raise
    except Exception as err:
        raise DoctorError(f"{url}: cannot use it: {type(err).__name__}: {err}") from None


def _sqlite_usable(path: str) -> bool:
    """True when the database file exists; False when the copy may create it. Raises where
    it could not: a directory at that path, or a directory the file cannot be made in."""
    if os.path.isdir(path):
        raise DoctorError(f"sqlite:///{path}: a directory, not a database file; give a file path")
    if os.path.exists(path):
        return True
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise DoctorError(
            f"sqlite:///{path}: cannot create the database there ({parent} is not a writable"
            " directory); give a path in one"
        )
    return False


def _has_optuna_tables(url: str) -> bool:
    """Connects (so credentials and reachability are proven) and looks for Optuna's tables."""
    _check_driver(url)
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return bool(sqlalchemy.inspect(connection).has_table("studies"))
    finally:
        engine.dispose()


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
        raise Refused(f"{journal}: damaged, so nothing was copied: {health.summary}")
    refuse_if_in_use(journal, os.stat(journal), "migrate")
    import optuna

    _refuse_unreadable_ops(journal, health, optuna.__version__)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source = _source(journal)
    names = _chosen(source, tuple(studies), journal)
    clash = sorted(set(names) & _target_names(url, dry_run))
    if clash:
        raise Refused(f"{url}: already has a study named {clash[0]!r}; nothing was copied.")
    copies = tuple(StudyCopy(name=name, trials_by_state=_by_state(source, name)) for name in names)
    planned = MigrateReport(journal=journal, url=url, studies=copies, performed=False,
                            difference=None, storage_line=storage_line(url),
                            elapsed_seconds=0.0,
                            discarded_trials=health.discarded_trials)  # fmt: skip
    if dry_run:
        return planned
    target = target_storage(url)
    counter = _Counter(sum(sum(c.trials_by_state.values()) for c in copies), progress)
    created: list[str] = []  # only these may be named for deletion: the target is shared
    for name in names:
        try:
            _copy(source, target, name, counter, created)
        except (Exception, KeyboardInterrupt) as err:
            raise _stopped(url, name, created, counter, err) from err
    # The journal's replay is reused (one replay in memory, as copy_study holds); the target
    # is read afresh, so what is compared is what the database really holds.
    difference = verify(source, url, names)
    elapsed = time.monotonic() - started
    return replace(planned, performed=True, difference=difference, elapsed_seconds=elapsed)


def _refuse_unreadable_ops(journal: str, health: Any, version: str) -> None:
    """The copy reads the journal with the installed Optuna: ops it does not know make it
    fail (`Should not reach.`), so nothing is started."""
    if health.newer_ops:
        codes = ", ".join(str(code) for code in health.newer_ops)
        raise Refused(
            f"{journal}: holds ops with op code {codes}, which this doctor and Optuna {version}"
            " do not know (a newer writer's); nothing was copied. Migrate with the writer's"
            " own tools, or with a newer journal-doctor."
        )
    if health.discarded_trials and int(version.split(".")[0]) < 5:
        raise Refused(
            f"{journal}: holds discarded trials (op 10), which Optuna {version} cannot read;"
            " nothing was copied. Migrate with Optuna 5 or newer."
        )


def _stopped(
    url: str, name: str, created: list[str], counter: _Counter, err: BaseException
) -> DoctorError:
    """What a copy cut short left in the target, and how to start again from nothing."""
    # The first line only: a driver's error can run on for a dozen (SQL, parameters, a link).
    why = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
    why = why.splitlines()[0]
    error = Interrupted if isinstance(err, KeyboardInterrupt) else DoctorError
    stopped = (
        f"{url}: the copy stopped in study {name!r} after {counter.done} of {counter.total}"
        f" trial(s) ({why})."
    )
    if not created:
        return error(f"{stopped} Nothing was created in the target.")
    deletes = "; ".join(
        f"optuna delete-study --storage {url!r} --study-name {made!r}" for made in created
    )
    return error(
        f"{stopped} The target keeps what was copied: delete it ({deletes}), then run migrate"
        " again."
    )


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


class _Counter:
    """Trials copied so far, told to `progress` each time a hundred more are and at the end."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def __call__(self, copied: int) -> None:
        before, self.done = self.done, self.done + copied
        if self.progress is not None and (
            self.done // 100 > before // 100 or self.done == self.total
        ):
            self.progress(self.done, self.total)


def _copy(source: Any, target: Any, name: str, counter: _Counter, created: list[str]) -> None:
    """What optuna.copy_study copies, a batch of trials per transaction where the target is a
    database (`rdb_batch`), one trial at a time through the public API elsewhere. The name is
    added to `created` once the target's study exists."""
    study = source.get_study_id_from_name(name)
    trials = source.get_all_trials(study, deepcopy=False)
    copy = target.create_new_study(source.get_study_directions(study), name)
    created.append(name)
    for key, value in source.get_study_system_attrs(study).items():
        target.set_study_system_attr(copy, key, value)
    for key, value in source.get_study_user_attrs(study).items():
        target.set_study_user_attr(copy, key, value)
    if rdb_batch.supports(target):
        rdb_batch.add_trials(target, copy, trials, counter)
        return
    for trial in trials:
        target.create_new_trial(copy, template_trial=trial)
        counter(1)


def verify(source: Any, url: str, names: Iterable[str]) -> str | None:
    """The journal's studies (as `source` replayed them) and the target's, read afresh,
    compared trial by trial; the first difference, or None."""
    target = target_storage(url)
    for name in names:
        why = _study_difference(source, target, name)
        if why:
            return f"study {name!r}{why}"
    return None


def _study_difference(source: Any, target: Any, name: str) -> str | None:
    a, b = source.get_study_id_from_name(name), target.get_study_id_from_name(name)
    for what, getter in (("directions", "get_study_directions"),
                         ("user attrs", "get_study_user_attrs"),
                         ("system attrs", "get_study_system_attrs")):  # fmt: skip
        left, right = getattr(source, getter)(a), getattr(target, getter)(b)
        if not same(left, right):
            return f": {what}: {left!r} != {right!r}"
    journal = source.get_all_trials(a, deepcopy=False)
    copied = _trials_of(target, b)
    count = 0
    for x, y in zip_longest(journal, copied):
        if x is None or y is None:
            count += (y is not None) + sum(1 for _ in copied)
            return f": {len(journal)} trials in the journal, {count} copied"
        count += 1
        why = trial_difference(x, y)
        if why:
            return f", trial {x.number}: {why}"
    return None


def _trials_of(target: Any, study: int) -> Iterator[Any]:
    # A database a batch at a time: read whole, an RDB study holds far more than the journal's
    # replay does (175 MB against 67 MB for 10,550 trials).
    if rdb_batch.supports(target):
        return rdb_batch.trials(target, study)
    return iter(target.get_all_trials(study, deepcopy=False))


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
