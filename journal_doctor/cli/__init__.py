"""The `journal-doctor` command: each command parses, calls the core, renders, returns a code.

`app` is the Typer app; one module per command or group holds its commands, registered here in
the order `--help` lists them; `main` is the one place that maps errors to exit codes: 0
nothing blocks a resume, 1 something needs attention, 2 usage error, 3 a bug, 130 interrupted.
"""

from __future__ import annotations

from . import demo, journal, locks, migrate, trials
from .app import app, register
from .main import exit_code, main

register(locks.scan, locks.clean, locks.watch, journal.check, journal.repair, trials.trials,
         migrate.migrate, demo.demo)  # fmt: skip

__all__ = ["app", "exit_code", "main"]
