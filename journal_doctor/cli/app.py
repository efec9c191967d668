"""The Typer app: its help, each command's examples and exit codes, `--version`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

import typer

from .._version import __version__

# Help epilogs: click indents them by 2, so every line here stays within 78 columns.
EXAMPLES = {
    "scan": """
  # what locks are there, who holds them
  journal-doctor scan runs/
  # the same for scripts
  journal-doctor scan --json runs/ | jq .
  # a share this host cannot detect (sshfs)
  journal-doctor scan --shared /mnt/share""",
    "clean": """
  # what would be removed, and why
  journal-doctor clean --dry-run runs/
  # the pre-resume step
  journal-doctor clean --force --wait 60 runs/ && python train.py""",
    "watch": """
  # heal while the fleet runs (Ctrl-C ends)
  journal-doctor watch /shared/runs
  journal-doctor watch --json --interval 2 runs/ >> heal.log
  journal-doctor watch --fail-stale-trials --shared /mnt/nfs/runs""",
    "migrate": """
  journal-doctor migrate --dry-run runs/study.log sqlite:///study.db
  journal-doctor migrate --force runs/study.log \\
      postgresql+psycopg://user@db/optuna
  journal-doctor migrate --force --study s1 runs/study.log \\
      redis://localhost:6379/0""",
    "check": """
  # will Optuna load this journal?
  journal-doctor check runs/study.log
  # for scripts
  journal-doctor check --json runs/*.log""",
    "repair": """
  # what would change
  journal-doctor repair --dry-run runs/study.log
  # make it loadable, keeping every good line
  journal-doctor repair --force runs/study.log""",
    "trials": """
  # RUNNING/WAITING trials a crash left
  journal-doctor trials runs/study.log
  # fail them (asks first) and run them again
  journal-doctor trials --retry runs/study.log""",
    "demo": """
  journal-doctor demo
  # the drop-in storage: no clean needed
  journal-doctor demo --guarded""",
}
EXIT_CODES = {
    "scan": "0 nothing blocks a resume, 1 a lock, leftover or journal does",
    "clean": "0 nothing blocks a resume afterwards, 1 something still does",
    "watch": "0 ended by Ctrl-C or SIGTERM",
    "check": "0 every journal is healthy, 1 one is damaged",
    "repair": "0 every journal is healthy afterwards, 1 one is not",
    "trials": "0 no trial is left RUNNING, 1 one is",
    "migrate": "0 copied and verified (--dry-run: the copy would run), 1 not",
    "demo": "0 the demo ran",
}
COMMON_CODES = "2 usage error, 3 a bug (please report it), 130 interrupted."


def epilog(command: str) -> str:
    """One "Examples:" block and the exit codes that are true for this command."""
    codes = f"{EXIT_CODES[command]},\n  {COMMON_CODES}"
    return f"\b\nExamples:{EXAMPLES[command]}\n\n\b\nExit codes: {codes}\n"


def build(commands: Sequence[Callable[..., int]]) -> typer.Typer:
    """The app with these commands, in the order `--help` lists them; each with its examples
    and exit codes."""
    app = typer.Typer(
        name="journal-doctor",
        help="Heal Optuna file journals after crashes: find stale locks, judge them, remove"
        " only what is provably orphaned; check and repair torn journals.",
        epilog="\b\nExamples:" + EXAMPLES["scan"] + EXAMPLES["clean"] + "\n",
        no_args_is_help=True,
        add_completion=True,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
    )
    app.callback()(_main)
    for command in commands:
        app.command(epilog=epilog(command.__name__))(command)
    return app


def for_args(commands: Sequence[Callable[..., int]], args: Sequence[str]) -> typer.Typer:
    """The app to run `args` with: only the command they name, when they name one. Typer
    builds every registered command's options at each start (5 ms, a fifteenth of `scan`'s
    start-up); the one command alone parses, helps and fails exactly as in the whole app."""
    named = [command for command in commands if args and command.__name__ == args[0]]
    return build(named or commands)


def _version(value: bool) -> None:
    if value:
        print(f"journal-doctor {__version__}")
        raise typer.Exit(0)


def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Heal Optuna file journals after crashes."""
