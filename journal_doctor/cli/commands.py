"""Every command, in the order `--help` lists them."""

from __future__ import annotations

from . import demo, journal, locks, migrate, trials

COMMANDS = (locks.scan, locks.clean, locks.watch, journal.check, journal.repair, trials.trials,
            migrate.migrate, demo.demo)  # fmt: skip
