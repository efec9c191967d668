"""Optuna's RDB tables written and read a batch of trials at a time, for `migrate`.

RDBStorage writes a trial as a dozen ORM statements in a transaction of its own (5 to 9 ms on
SQLite, mostly the ORM's own work: `copy_study` of 10,550 trials takes about 60 s) and reads a
study's trials in one query held whole (175 MB for the same study). A migration writes into a
study it has just created and that nobody else uses yet, so it adds a batch of trials per
transaction through Optuna's own ORM models, each field encoded by Optuna's own helpers as
RDBStorage's `_set_*_without_commit` do, and reads them back a batch at a time through
RDBStorage's own row-to-trial builder: what the verification compares is what Optuna itself
decodes from the database.

These are Optuna's private parts (stable from 3.6 to 5.0). `supports()` checks each of them, and
where one is missing `migrate` uses the public per-trial path instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

BATCH = 100  # trials per transaction and per read; bounds the memory either takes
RELATIONS = ("params", "values", "user_attributes", "system_attributes", "intermediate_values")


def supports(storage: Any) -> bool:
    """Whether `storage` is an RDBStorage whose private parts this module uses are all there."""
    import optuna

    if not isinstance(storage, optuna.storages.RDBStorage):
        return False
    try:
        from optuna.storages._rdb import models
    except ImportError:
        return False
    return (
        hasattr(storage, "scoped_session")
        and hasattr(storage, "_build_frozen_trial_from_trial_model")
        and all(hasattr(models.TrialModel, relation) for relation in RELATIONS)
        and hasattr(models.TrialValueModel, "value_to_stored_repr")
        and hasattr(models.TrialIntermediateValueModel, "intermediate_value_to_stored_repr")
    )


def add_trials(
    storage: Any, study_id: int, trials: Sequence[Any], on_batch: Callable[[int], None]
) -> None:
    """Add `trials` (FrozenTrials, in order, numbers kept) to a study nobody else writes to."""
    for start in range(0, len(trials), BATCH):
        batch = trials[start : start + BATCH]
        session = storage.scoped_session()
        try:
            session.add_all([_trial_row(study_id, trial) for trial in batch])
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        on_batch(len(batch))


def _trial_row(study_id: int, trial: Any) -> Any:
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models as m

    row = m.TrialModel(
        number=trial.number,
        study_id=study_id,
        state=trial.state,
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
    )
    for objective, value in enumerate(trial.values or ()):
        stored, kind = m.TrialValueModel.value_to_stored_repr(value)
        row.values.append(m.TrialValueModel(objective=objective, value=stored, value_type=kind))
    for name, value in trial.params.items():
        distribution = trial.distributions[name]
        internal = distribution.to_internal_repr(value)
        as_json = distribution_to_json(distribution)
        row.params.append(
            m.TrialParamModel(param_name=name, param_value=internal, distribution_json=as_json)
        )
    for key, value in trial.user_attrs.items():
        row.user_attributes.append(m.TrialUserAttributeModel(key=key, value_json=json.dumps(value)))
    for key, value in trial.system_attrs.items():
        row.system_attributes.append(
            m.TrialSystemAttributeModel(key=key, value_json=json.dumps(value))
        )
    for step, value in trial.intermediate_values.items():
        kept, what = m.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
        row.intermediate_values.append(
            m.TrialIntermediateValueModel(
                step=step, intermediate_value=kept, intermediate_value_type=what
            )
        )
    return row


def trials(storage: Any, study_id: int) -> Iterator[Any]:
    """The study's trials in the order Optuna reads them (by trial id), a batch in memory."""
    from optuna.storages._rdb import models
    from sqlalchemy import orm

    loads = [orm.selectinload(getattr(models.TrialModel, relation)) for relation in RELATIONS]
    last = -1
    while True:
        session = storage.scoped_session()
        try:
            rows = (
                session.query(models.TrialModel)
                .options(*loads)
                .filter(models.TrialModel.study_id == study_id, models.TrialModel.trial_id > last)
                .order_by(models.TrialModel.trial_id)
                .limit(BATCH)
            )
            batch = [storage._build_frozen_trial_from_trial_model(row) for row in rows]
        finally:
            session.close()
        if not batch:
            return
        yield from batch
        last = batch[-1]._trial_id
