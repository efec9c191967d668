"""The one map from what went wrong to an exit code and one line on stderr (pre-commit's
`error_handler`): 0 nothing blocks a resume; 1 something needs attention; 2 usage error; 3 a
bug; 130 interrupted."""

from __future__ import annotations

import typer

from .._version import __version__
from ..errors import DoctorError, os_error_advice


def exit_code(error: BaseException) -> tuple[int, str | None]:
    """The one map from what went wrong to (exit code, the line to print)."""
    if isinstance(error, DoctorError):
        return error.exit_code, str(error)
    if isinstance(error, (KeyboardInterrupt, typer.Abort)):
        return 130, "interrupted"
    if isinstance(error, BrokenPipeError):
        return 1, None  # the reader went away (`| head`): nothing more to say
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return 1, f"{where}{os_error_advice(error)}"
    return 3, (
        f"internal error: {type(error).__name__}: {error}; this is a bug in journal-doctor"
        f" {__version__}: please report it with the command you ran"
    )
