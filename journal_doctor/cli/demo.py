"""demo: a crash, and the doctor healing it, in a temporary directory."""

from __future__ import annotations

from typing import Annotated

import typer

from ..render import reports


def demo(
    trials: Annotated[int, typer.Option(min=1, help="Trials the resumed study runs.")] = 3,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare", help="Also time Optuna resuming on its own (adds its 30 s grace period)."
        ),
    ] = False,
    guarded: Annotated[
        bool,
        typer.Option(
            "--guarded",
            help="The workers use journal_doctor.storage(): the next worker breaks the dead"
            " holder's lock itself, and fails and retries its trial.",
        ),
    ] = False,
) -> int:
    """Crash a real Optuna worker holding its lock, then scan, clean and resume, with timings.

    Runs in a temporary directory and removes it afterwards. Needs optuna (a dependency).
    """
    import time

    from ..demo import run_demo, run_guarded_demo

    started = time.monotonic()
    steps = run_guarded_demo(trials) if guarded else run_demo(trials=trials, compare=compare)
    reports.demo(steps, started)
    return 0
