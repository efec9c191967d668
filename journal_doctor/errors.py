"""Every error the core raises on purpose, and the one sentence of advice for OS errors.

The CLI maps these to exit codes in one place (`cli.main`): a `DoctorError` is one line on
stderr with its `exit_code`; anything else is a bug (exit 3). The core never prints.
"""

from __future__ import annotations

import errno
import os


class DoctorError(Exception):
    """A problem the user can fix; the message names the path and what to do (exit 1)."""

    exit_code = 1


class Refused(DoctorError):
    """An action was not started, or stopped before touching anything (exit 1)."""


class UsageError(DoctorError):
    """Bad arguments, e.g. a PATH that does not exist (exit 2)."""

    exit_code = 2


class Interrupted(DoctorError):
    """Ctrl-C where nothing was changed yet (exit 130, as a shell reports SIGINT)."""

    exit_code = 130


class NotAJournal(UsageError):
    """The path is not an Optuna journal: not a regular file, or not JSON lines of Optuna ops."""


class NoJournal(UsageError, FileNotFoundError):
    """The journal does not exist: what every function taking a journal raises (exit 2). It is
    a FileNotFoundError too, so `except FileNotFoundError` still catches it. `.path`."""

    def __init__(self, path: str) -> None:
        FileNotFoundError.__init__(self, errno.ENOENT, "no such journal", path)
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: no such journal; give the path of an Optuna journal file"


class RepairRefused(Refused):
    """`repair` did not start, or stopped before touching the journal. `.journal`."""

    def __init__(self, message: str, *, journal: str) -> None:
        super().__init__(message)
        self.journal = journal


class TrialsRefused(Refused):
    """`fail_trials` wrote nothing (a damaged journal, an unknown trial...). `.journal`."""

    def __init__(self, message: str, *, journal: str) -> None:
        super().__init__(message)
        self.journal = journal


class UnprovenTrials(TrialsRefused):
    """RUNNING trials that no heartbeat proves abandoned: failing them takes the user's word
    (`force=True`). A plain worker keeps no file open while it evaluates a trial, so nothing
    else the doctor can see proves its worker gone. `.numbers`: those trials' numbers."""

    def __init__(self, journal: str, numbers: tuple[int, ...]) -> None:
        listed = ", ".join(str(n) for n in numbers)
        super().__init__(
            f"{journal}: trial(s) {listed} have no heartbeat; a worker may still be running"
            " them: stop the workers first, or pass --force",
            journal=journal,
        )
        self.numbers = numbers


class LockTimeout(TimeoutError):
    """The guarded lock was not acquired within `timeout` seconds. The message names the lock,
    its holder and what would help; `.path` is the lock, `.waiting_on` who held it and why."""

    def __init__(self, message: str, *, path: str = "", waiting_on: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.waiting_on = waiting_on


class LockLost(DoctorError):
    """The guarded lock was broken while this process held it and wrote under it (its host was
    cut off or frozen past the grace period): another holder may have written meanwhile.
    `.path` is the lock, `.journal` the journal to check (`journal-doctor check`)."""

    def __init__(self, message: str, *, path: str, journal: str) -> None:
        super().__init__(message)
        self.path = path
        self.journal = journal


class JournalWriteFailed(DoctorError):
    """A guarded append could not be written (the filesystem full, a quota used up, a file size
    limit, an I/O error). The journal was put back to its length before the append, so no torn
    line is left, unless `.rolled_back` is False: then the message names `journal-doctor
    repair`. `.journal`, `.errno` (the write's), `.rolled_back`."""

    def __init__(
        self, journal: str, err: OSError, *, rollback_error: OSError | None = None
    ) -> None:
        self.journal = journal
        self.errno = err.errno
        self.rolled_back = rollback_error is None
        known = _WRITE_CAUSES.get(err.errno or 0)
        cause = known.format(journal=journal) if known else f"{journal}: {err.strerror or err}"
        if rollback_error is None:
            fix = _WRITE_FIXES.get(err.errno or 0, "fix the cause")
            super().__init__(f"{cause}: nothing was written; {fix}, then resume")
        else:
            super().__init__(
                f"{cause}, and its torn last line could not be removed"
                f" ({rollback_error.strerror or rollback_error}): run `journal-doctor repair"
                f" {journal}` before the next worker starts"
            )


_WRITE_CAUSES = {
    errno.ENOSPC: "the filesystem holding {journal} is full",
    errno.EDQUOT: "the disk quota for {journal} is used up",
    errno.EFBIG: "{journal} is as large as this process or filesystem lets a file grow",
    errno.EIO: "an I/O error while writing {journal}",
}
_WRITE_FIXES = {
    errno.ENOSPC: "free space",
    errno.EDQUOT: "free space or raise the quota",
    errno.EFBIG: "raise the file size limit (ulimit -f) or migrate the study to a database",
    errno.EIO: "check the disk or the network filesystem",
}


def os_error_advice(err: OSError, owner: str | None = None) -> str:
    """`Permission denied: run the doctor as alice (its owner) or as root`, and the like."""
    what = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM):
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # root was refused: a root-squashing NFS export, a FUSE mount of another user.
            who = f"as {owner}, its owner, " if owner and owner != "root" else ""
            return (
                f"{what} even for root here (root_squash, a FUSE mount): run the doctor {who}on"
                " the host that serves this filesystem"
            )
        if owner == "root":
            who = "as root"
        elif owner:
            who = f"as {owner} (its owner) or as root"
        else:
            who = "as the file's owner or as root"
        return f"{what}: run the doctor {who}"
    if err.errno == errno.EROFS:
        return f"{what}: run it from a host that mounts this filesystem read-write"
    if err.errno == errno.ESTALE:
        return f"{what}: the network filesystem lost this file; remount it, then run again"
    return what


def path_error(path: str, err: OSError) -> str:
    """`runs/j.log: Permission denied: run the doctor as alice (its owner) or as root`, naming
    the owner of the directory that refused (the path itself may not be stat-able)."""
    owner = None
    try:
        import pwd

        owner = pwd.getpwuid(os.stat(os.path.dirname(path) or ".").st_uid).pw_name
    except (OSError, KeyError, ImportError):
        pass
    return f"{path}: {os_error_advice(err, owner)}"
