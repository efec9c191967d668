"""Walk the given paths and name every lock artifact, without judging anything.

Only directory entries whose names could be lock artifacts get looked at more closely; the walk
itself relies on `os.scandir`'s cached d_type, so a tree of 200k files costs no stat calls beyond
the kernel's getdents (except on filesystems that report DT_UNKNOWN).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from .model import LeftoverOrigin, ScanProblem

LOCK_SUFFIX = ".lock"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Optuna's release renames the lock to `<lock><uuid4>.rename` before unlinking it.
_OPTUNA_RELEASE = re.compile(r"(?s)(?P<journal>.+)\.lock" + _UUID + r"\.rename")
# The doctor's break renames the lock to this private name before unlinking it.
DOCTOR_BREAK_INFIX = ".journal-doctor-"
DOCTOR_BREAK_SUFFIX = ".break"
_DOCTOR_BREAK = re.compile(r"(?s)(?P<journal>.+)\.lock\.journal-doctor-[0-9a-f]{32}\.break")
# Cheap pre-filter: every artifact name contains ".lock"; most file names do not.
_MAYBE_ARTIFACT = ".lock"


def doctor_break_name(lock_name: str, token: str) -> str:
    return f"{lock_name}{DOCTOR_BREAK_INFIX}{token}{DOCTOR_BREAK_SUFFIX}"


class LockCandidate(NamedTuple):
    path: str
    journal: str
    root: str


class LeftoverCandidate(NamedTuple):
    path: str
    journal: str
    origin: LeftoverOrigin
    root: str


Candidate = LockCandidate | LeftoverCandidate


def classify_name(directory: str, name: str, root: str) -> Candidate | None:
    """Say what a directory entry is by its name alone, or None if it cannot be an artifact."""
    if _MAYBE_ARTIFACT not in name:
        return None
    path = os.path.join(directory, name)
    if name.endswith(LOCK_SUFFIX) and len(name) > len(LOCK_SUFFIX):
        return LockCandidate(path, path[: -len(LOCK_SUFFIX)], root)
    for pattern, origin in (
        (_OPTUNA_RELEASE, LeftoverOrigin.OPTUNA_RELEASE),
        (_DOCTOR_BREAK, LeftoverOrigin.DOCTOR_BREAK),
    ):
        match = pattern.fullmatch(name)
        if match:
            return LeftoverCandidate(
                path, os.path.join(directory, match.group("journal")), origin, root
            )
    return None


def _walk(root: str, on_problem: Callable[[ScanProblem], None]) -> Iterator[Candidate]:
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    # The hot loop of a scan: one substring test per entry, and d_type (no stat)
                    # to tell directories; symlinked directories are not followed.
                    if _MAYBE_ARTIFACT in entry.name:
                        candidate = classify_name(directory, entry.name, root)
                        if candidate is not None:
                            yield candidate
                            continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                    except OSError as err:
                        on_problem(ScanProblem(entry.path, _describe(err)))
        except OSError as err:
            on_problem(ScanProblem(directory, _describe(err)))


def _describe(err: OSError) -> str:
    return err.strerror or str(err)


def _artifacts_of_journal(journal: str, root: str) -> Iterator[Candidate]:
    """A journal given directly: its lock and the leftovers beside it."""
    directory, base = os.path.split(journal)
    directory = directory or "."
    lock = journal + LOCK_SUFFIX
    if os.path.lexists(lock):
        yield LockCandidate(lock, journal, root)
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(base + LOCK_SUFFIX):
                    candidate = classify_name(directory, entry.name, root)
                    if isinstance(candidate, LeftoverCandidate) and candidate.journal == journal:
                        yield candidate
    except OSError:
        # The lock itself was found above; an unlistable directory only hides leftovers.
        pass


def discover(
    roots: Sequence[str], on_problem: Callable[[ScanProblem], None]
) -> Iterator[Candidate]:
    """Yield every lock artifact under the roots, each once.

    A root may be a directory (walked recursively, symlinked directories not followed), a lock
    or leftover (taken as it is), or a journal (its lock and leftovers). Roots must exist: the
    caller turns a missing one into a usage error before calling this.
    """
    seen: set[str] = set()
    for root in roots:
        root_path = os.path.normpath(root)
        found: Iterable[Candidate]
        if os.path.isdir(root_path):
            # A symlink to a directory given explicitly is followed (the user named it);
            # symlinked directories below it are not.
            found = _walk(root_path, on_problem)
        else:
            directory, name = os.path.split(root_path)
            direct = classify_name(directory, name, root_path)
            found = [direct] if direct is not None else _artifacts_of_journal(root_path, root_path)
        if len(roots) == 1:
            yield from found  # one walk never meets a name twice
            continue
        for candidate in found:
            key = os.path.abspath(candidate.path)
            if key not in seen:
                seen.add(key)
                yield candidate
