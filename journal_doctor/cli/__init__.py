"""The `journal-doctor` command: each command parses, calls the core, renders, returns a code.

`app` is the Typer app; one module per command or group holds its commands, listed in
`commands.COMMANDS` in the order `--help` lists them; `main` is the one place that maps errors
to exit codes: 0 nothing blocks a resume, 1 something needs attention, 2 usage error, 3 a bug,
130 interrupted. `main` builds only the command its arguments name (`app.for_args`).
"""

from __future__ import annotations

from .app import build
from .commands import COMMANDS
from .exit_codes import exit_code
from .main import main

app = build(COMMANDS)

__all__ = ["COMMANDS", "app", "exit_code", "main"]
