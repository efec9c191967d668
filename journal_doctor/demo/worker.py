"""A real Optuna worker on a journal, run as a subprocess by the demo and the tests.

    python -m journal_doctor.demo.worker JOURNAL --lock symlink|open --trials N [--log FILE]

Each completed trial is appended to --log as `number value` (the soak compares these with the
journal). This module imports optuna; nothing on scan/clean's path imports it.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("--lock", choices=("symlink", "open"), default="symlink")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--study", default="doctor-demo")
    parser.add_argument("--log", default=None)
    parser.add_argument("--grace", type=int, default=30, help="0 disables the grace period")
    parser.add_argument("--guarded", action="store_true", help="journal_doctor.storage()")
    parser.add_argument("--heartbeat", type=float, default=None, help="guarded: beat interval")
    parser.add_argument("--guard-grace", type=float, default=None, help="guarded: grace period")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds in each objective")
    parser.add_argument(
        "--mark", default=None, help="a file each objective writes its trial's number to"
    )
    args = parser.parse_args(argv)

    import optuna

    from ..journal.optuna_api import file_backend_class, journal_storage_class, optuna_lock
    from ..model import LockKind

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # 3.x: "experimental"
    if args.guarded:
        storage = guarded_storage(args)
    else:
        kind = LockKind.FILE if args.lock == "open" else LockKind.SYMLINK
        lock = optuna_lock(args.journal, kind, grace_period=args.grace or None)  # >= 4.3 only
        storage = journal_storage_class()(file_backend_class()(args.journal, lock_obj=lock))
    study = optuna.create_study(study_name=args.study, storage=storage, load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        if args.sleep:
            time.sleep(args.sleep)
        if args.mark:  # replaced whole: a reader never sees it half written
            with open(args.mark + ".new", "w") as mark:
                mark.write(str(trial.number))
            os.replace(args.mark + ".new", args.mark)
        return x * x

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if args.log and trial.state == optuna.trial.TrialState.COMPLETE:
            with open(args.log, "a") as log:
                log.write(f"{trial.number} {trial.value!r}\n")
                log.flush()
                os.fsync(log.fileno())

    study.optimize(objective, n_trials=args.trials, callbacks=[record])
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    print(f"{len(study.trials)} trials in the study, {len(complete)} complete", flush=True)


def guarded_storage(args: argparse.Namespace) -> Any:
    """journal_doctor.storage() with Optuna's retry callback: trials of dead workers are failed
    and run again by the study itself."""
    import optuna

    from ..guard.storage import storage

    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # >= 5.0
    retry = retry or optuna.storages.RetryFailedTrialCallback
    options: dict[str, Any] = {}
    if args.heartbeat is not None:
        options["heartbeat_interval"] = args.heartbeat
    if args.guard_grace is not None:
        options["grace_period"] = args.guard_grace
    return storage(args.journal, lock=args.lock, failed_trial_callback=retry(), **options)


if __name__ == "__main__":
    main()
