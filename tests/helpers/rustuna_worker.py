"""A real Rustuna worker, run as a subprocess by the tests (`rustuna` is in the test extra).

    python tests/helpers/rustuna_worker.py JOURNAL TRIALS SLEEP [--ask]

Runs TRIALS trials of SLEEP seconds on the study "doctor-demo" (`--ask`: asks one trial, prints
"asked NUMBER", and sleeps with it RUNNING until killed). Prints "done N" at the end.
"""

from __future__ import annotations

import sys
import time

import rustuna


def main(journal: str, trials: str, sleep: str, *flags: str) -> None:
    storage = rustuna.storages.JournalFileStorage(journal)
    study = rustuna.create_study(study_name="doctor-demo", storage=storage, load_if_exists=True)
    if "--ask" in flags:
        trial = study.ask()
        trial.suggest_float("x", -10, 10)
        print("asked", trial.number, flush=True)
        time.sleep(3600)

    def objective(trial: rustuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        time.sleep(float(sleep))
        return x * x

    study.optimize(objective, n_trials=int(trials))
    print("done", len(study.trials), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
