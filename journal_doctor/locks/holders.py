"""Who has the journals open: one pass over the process table for every lock of a scan.

Only a lock holder opens the journal for writing (Optuna's `append_logs` takes the lock, opens
"ab", writes, fsyncs, closes, releases), so a live process with the journal open for writing is
the holder. Readers open it without the lock: they are live workers, not holders.

The pass is restricted to processes of the users who own the locks (the creator of a lock file
is its owner). A process whose open files cannot be read is counted per user, so that the judge
can say `unknown` instead of guessing: liveness fails closed.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import Any

from ..model import Holder, HolderSurvey

JournalKey = tuple[int, int]

_CMDLINE_MAX = 120
_ACCESS_MODE = 0o3  # O_ACCMODE
_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)
_DELETED = " (deleted)"


def _fd_flags(pid: int, fd: str) -> int | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as info:
            for line in info:
                if line.startswith(b"flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _open_journals_linux(
    pid: int, journals: Mapping[JournalKey, str], names: Collection[str]
) -> list[tuple[JournalKey, bool]]:
    """(journal, writing) for each fd of `pid` on one of the journals. Raises PermissionError."""
    found: list[tuple[JournalKey, bool]] = []
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue  # closed meanwhile
        if link.endswith(_DELETED):
            link = link[: -len(_DELETED)]
        # Cheap name test first; only a plausible fd costs a stat. The (device, inode)
        # comparison then makes bind mounts and path aliases agree.
        if os.path.basename(link) not in names:
            continue
        try:
            st = os.stat(f"{fd_dir}/{fd}")
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key not in journals:
            continue
        flags = _fd_flags(pid, fd)
        # Unknown flags fail closed: treat the fd as a writer.
        writing = flags is None or (flags & _ACCESS_MODE) in _WRITE_MODES
        found.append((key, writing))
    return found


def _open_journals_portable(
    proc: object, journals: Mapping[JournalKey, str]
) -> list[tuple[JournalKey, bool]]:
    import psutil

    assert isinstance(proc, psutil.Process)
    found: list[tuple[JournalKey, bool]] = []
    for opened in proc.open_files():
        try:
            st = os.stat(opened.path)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in journals:
            mode = getattr(opened, "mode", "w")
            found.append((key, mode != "r"))
    return found


def _holder(proc: object, writing: bool) -> Holder:
    import psutil

    assert isinstance(proc, psutil.Process)
    with proc.oneshot():
        try:
            cmdline = " ".join(proc.cmdline())
        except (psutil.AccessDenied, psutil.ZombieProcess):
            cmdline = ""
        if len(cmdline) > _CMDLINE_MAX:
            cmdline = cmdline[: _CMDLINE_MAX - 1] + "…"
        uids = proc.uids()
        try:
            user = proc.username()
        except (KeyError, psutil.AccessDenied):
            user = str(uids.effective)
        return Holder(
            pid=proc.pid,
            name=proc.name(),
            user=user,
            status=str(proc.status()),
            started=proc.create_time(),
            cmdline=cmdline,
            writing=writing,
        )


class _Tally:
    """What one pass over the process table found."""

    def __init__(self) -> None:
        self.holders: dict[JournalKey, list[Holder]] = defaultdict(list)
        self.uninspectable: dict[int, int] = defaultdict(int)
        self.examined = 0

    def survey(self) -> HolderSurvey:
        return HolderSurvey(
            holders_by_journal={key: tuple(found) for key, found in self.holders.items()},
            uninspectable_by_uid=dict(self.uninspectable),
            processes_examined=self.examined,
        )


def survey_holders(
    journals: Mapping[JournalKey, str],
    owner_uids: Collection[int],
    aliases: Collection[str] = (),
) -> HolderSurvey:
    """One pass over the processes of `owner_uids`, finding who has any of `journals` open.

    `journals` maps (device, inode) to a path: an fd is stat'ed only if its link names a file
    with one of those names, or one of `aliases` (the names symlinked journals point to).
    Returns at once when there is nothing to look for.
    """
    if not journals:
        return HolderSurvey()
    import psutil

    # rpartition, not os.path.basename: this runs once per lock of the scan.
    names = {path.rpartition(os.sep)[2] for path in journals.values()}
    names.update(aliases)
    wanted_uids, me = set(owner_uids), os.getpid()
    tally = _Tally()
    for proc in psutil.process_iter(["uids", "status"]):
        uids = proc.info.get("uids")
        if uids is None or proc.pid == me:
            continue
        if uids.real not in wanted_uids and uids.effective not in wanted_uids:
            continue
        if proc.info.get("status") in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            continue  # a zombie still has a pid but holds no files
        tally.examined += 1
        _look_at(proc, uids.effective, journals, names, tally)
    return tally.survey()


def _look_at(
    proc: Any, uid: int, journals: Mapping[JournalKey, str], names: Collection[str], tally: _Tally
) -> None:
    """Record `proc` as a holder (or reader) of the journals it has open; count it as
    uninspectable when its open files cannot be read (fail closed)."""
    import psutil

    try:
        if sys.platform.startswith("linux"):
            opened = _open_journals_linux(proc.pid, journals, names)
        else:
            opened = _open_journals_portable(proc, journals)
        per_journal: dict[JournalKey, bool] = {}
        for key, writing in opened:
            per_journal[key] = per_journal.get(key, False) or writing
        for key, writing in per_journal.items():
            tally.holders[key].append(_holder(proc, writing))
    except (FileNotFoundError, psutil.NoSuchProcess):
        return  # exited meanwhile
    except (PermissionError, psutil.AccessDenied):
        tally.uninspectable[uid] += 1


def users_of_journal(journal: str, st: os.stat_result) -> tuple[tuple[Holder, ...], int]:
    """Live processes with this one journal open (any access), and how many processes of its
    owner could not be inspected. For commands that act on a journal (repair, trials)."""
    survey = survey_holders(
        {(st.st_dev, st.st_ino): journal},
        {st.st_uid, os.geteuid()},
        aliases=[os.path.basename(os.path.realpath(journal))],
    )
    users = survey.holders_by_journal.get((st.st_dev, st.st_ino), ())
    return users, survey.uninspectable_by_uid.get(st.st_uid, 0)
