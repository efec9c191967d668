"""A real Optuna worker on a journal, run as a subprocess by the demo and the tests.

    python -m journal_doctor.demo.worker JOURNAL --lock symlink|open --trials N [--log FILE]

Each completed trial is appended to --log as `number value` (the soak compares these with the
journal). This module imports optuna; nothing on scan/clean's path imports it.
"""

from __future__ import annotations

import argparse
import os
import warnings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("--lock", choices=("symlink", "open"), default="symlink")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--study", default="doctor-demo")
    parser.add_argument("--log", default=None)
    parser.add_argument("--grace", type=int, default=30, help="0 disables the grace period")
    args = parser.parse_args(argv)

    import optuna

    from ..journal.optuna_api import file_backend_class, journal_storage_class, optuna_lock
    from ..model import LockKind

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # 3.x: "experimental"
    kind = LockKind.FILE if args.lock == "open" else LockKind.SYMLINK
    lock = optuna_lock(args.journal, kind, grace_period=args.grace or None)  # >= 4.3 only
    storage = journal_storage_class()(file_backend_class()(args.journal, lock_obj=lock))
    study = optuna.create_study(study_name=args.study, storage=storage, load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
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


if __name__ == "__main__":
    main()
