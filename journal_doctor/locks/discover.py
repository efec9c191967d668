"""Walk the given paths and name every lock artifact and possible journal, judging nothing.

Only directory entries whose names could be lock artifacts or journals get looked at more
closely; the walk itself relies on `os.scandir`'s cached d_type, so a tree of 200k files costs
no stat calls beyond the kernel's getdents (except on filesystems that report DT_UNKNOWN).
"""

from __future__ import annotations

import enum
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..errors import DoctorError, UsageError, os_error_advice, path_error
from ..model import LeftoverOrigin, ScanProblem
from ..protocol.lockfile import LOCK_SUFFIX, lock_path

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Optuna's release renames the lock to `<lock><uuid4>.rename` before unlinking it.
_OPTUNA_RELEASE = re.compile(r"(?s)(?P<journal>.+)\.lock" + _UUID + r"\.rename")
# The doctor's break renames the lock to a private name (`doctor_break_name`) first.
_DOCTOR_BREAK = re.compile(r"(?s)(?P<journal>.+)\.lock\.journal-doctor-[0-9a-f]{32}\.break")
# Cheap pre-filter: every artifact name contains ".lock"; most file names do not.
_MAYBE_ARTIFACT = ".lock"
# Journals without a lock are found by name (their first bytes then decide): the names Optuna's
# documentation and real projects use. A journal with any other name is found by its lock.
JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal", ".ndjson")


@dataclass(frozen=True, kw_only=True)
class LockCandidate:
    path: str
    journal: str
    root: str


@dataclass(frozen=True, kw_only=True)
class LeftoverCandidate:
    path: str
    journal: str
    origin: LeftoverOrigin
    root: str


@dataclass(frozen=True, kw_only=True)
class JournalCandidate:
    """A regular file whose name a journal could have; its first bytes decide (observe)."""

    path: str
    root: str


Candidate = LockCandidate | LeftoverCandidate | JournalCandidate


def classify_name(directory: str, name: str, root: str) -> Candidate | None:
    """Say what a directory entry is by its name alone, or None if it cannot be an artifact."""
    path = os.path.join(directory, name)
    if _MAYBE_ARTIFACT not in name:
        return JournalCandidate(path=path, root=root) if name.endswith(JOURNAL_SUFFIXES) else None
    if name.endswith(LOCK_SUFFIX) and len(name) > len(LOCK_SUFFIX):
        return LockCandidate(path=path, journal=path[: -len(LOCK_SUFFIX)], root=root)
    for pattern, origin in (
        (_OPTUNA_RELEASE, LeftoverOrigin.OPTUNA_RELEASE),
        (_DOCTOR_BREAK, LeftoverOrigin.DOCTOR_BREAK),
    ):
        match = pattern.fullmatch(name)
        if match:
            return LeftoverCandidate(
                path=path,
                journal=os.path.join(directory, match.group("journal")),
                origin=origin,
                root=root,
            )
    return None


def _walk(root: str, on_problem: Callable[[ScanProblem], None]) -> Iterator[Candidate]:
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    # The hot loop of a scan: two substring tests per entry, and d_type (no
                    # stat) to tell directories; symlinked directories are not followed.
                    name = entry.name
                    if _MAYBE_ARTIFACT in name or name.endswith(JOURNAL_SUFFIXES):
                        found = _classify_entry(directory, entry, root)
                        if found is not None:
                            yield found
                            continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                    except OSError as err:
                        on_problem(ScanProblem(path=entry.path, message=os_error_advice(err)))
        except OSError as err:
            on_problem(ScanProblem(path=directory, message=os_error_advice(err)))


def _classify_entry(directory: str, entry: os.DirEntry[str], root: str) -> Candidate | None:
    candidate = classify_name(directory, entry.name, root)
    if isinstance(candidate, JournalCandidate):
        try:
            return candidate if entry.is_file(follow_symlinks=False) else None
        except OSError:
            return None
    return candidate


def _artifacts_of_journal(journal: str, root: str) -> Iterator[Candidate]:
    """A journal given directly: the journal, its lock and the leftovers beside it.

    The directory is listed before the lock's name is trusted, as in a walk: an NFS client
    answers a lookup of a name it once found missing from that memory, for a minute or more
    after another host made it (measured on the NFS bed), and a listing asks the server."""
    yield JournalCandidate(path=journal, root=root)
    directory, base = os.path.split(journal)
    directory = directory or "."
    lock = lock_path(journal)
    listed: list[str] = []
    try:
        with os.scandir(directory) as entries:
            listed = [entry.name for entry in entries if entry.name.startswith(base + LOCK_SUFFIX)]
    except OSError:
        pass  # unlistable: the name alone decides, and leftovers stay hidden
    if os.path.basename(lock) in listed or os.path.lexists(lock):
        yield LockCandidate(path=lock, journal=journal, root=root)
    for name in listed:
        candidate = classify_name(directory, name, root)
        if isinstance(candidate, LeftoverCandidate) and candidate.journal == journal:
            yield candidate


class RootKind(enum.Enum):
    DIRECTORY = "directory"
    ARTIFACT = "artifact"  # a lock or a leftover, by its name
    JOURNAL = "journal"


_NOT_A_FILE = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def classify_root(root: str, is_journal: Callable[[str], bool]) -> RootKind:
    """What a PATH given on the command line is; UsageError for anything the doctor does not
    take (a FIFO, a file that is neither a lock nor a journal), DoctorError when it cannot be
    looked at (Permission denied, with what to do)."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise UsageError(
            f"{root}: no such file or directory; give a directory, a journal or a lock file"
        ) from None
    except OSError as err:
        raise DoctorError(path_error(root, err)) from None
    directory, name = os.path.split(os.path.normpath(root))
    if classify_name(directory, name, root) is not None and not name.endswith(JOURNAL_SUFFIXES):
        return RootKind.ARTIFACT  # even a dangling symlink lock given by name
    try:
        st = os.stat(root)  # a symlink to a directory or journal given explicitly is followed
    except OSError:
        raise UsageError(f"{root}: is a symbolic link that does not resolve") from None
    if stat.S_ISDIR(st.st_mode):
        return RootKind.DIRECTORY
    if stat.S_ISREG(st.st_mode) and is_journal(root):
        return RootKind.JOURNAL
    what = _NOT_A_FILE.get(stat.S_IFMT(st.st_mode), "a file that is not an Optuna journal or lock")
    raise UsageError(f"{root}: is {what}; give a directory, a journal or a lock file")


def discover(
    roots: Sequence[tuple[str, RootKind]], on_problem: Callable[[ScanProblem], None]
) -> Iterator[Candidate]:
    """Yield every lock artifact and possible journal under the roots, each once.

    A root may be a directory (walked recursively, symlinked directories not followed), a lock
    or leftover (taken as it is), or a journal (it, its lock and leftovers), as `classify_root`
    said.
    """
    seen: set[str] = set()
    for root, kind in roots:
        root_path = os.path.normpath(root)
        found: Iterable[Candidate]
        if kind is RootKind.DIRECTORY:
            found = _walk(root_path, on_problem)
        elif kind is RootKind.JOURNAL:
            found = _artifacts_of_journal(root_path, root_path)
        else:
            directory, name = os.path.split(root_path)
            direct = classify_name(directory, name, root_path)
            found = [direct] if direct is not None else []
        if len(roots) == 1:
            yield from found  # one walk never meets a name twice
            continue
        for candidate in found:
            key = os.path.abspath(candidate.path)
            if key not in seen:
                seen.add(key)
                yield candidate
