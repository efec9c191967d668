"""Errors the CLI turns into one line on stderr and an exit code."""

from __future__ import annotations


class DoctorError(Exception):
    """A problem the user can fix; the message names the path and what to do."""

    exit_code = 1


class UsageError(DoctorError):
    """Bad arguments, e.g. a PATH that does not exist (exit code 2)."""

    exit_code = 2
