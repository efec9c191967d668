"""A cheap look at a journal's first and last bytes, for `scan` (which must stay fast).

`check` reads the whole file; this reads two small pieces of it and judges the last few lines
the way `check` would. Damage is near the end when it hurts: a torn write is the last line, the
op the next worker glued onto it is the one after, and once every load fails nobody writes more.
"""

from __future__ import annotations

import os
import stat
from functools import partial

from ..fsio import open_nonblocking
from ..model import JournalState, Prognosis, TailHealth
from .ops import HEAD_BYTES, classify, is_journal_head, sound_op

TAIL_PROBE = 64 << 10
LAST_LINES = 8  # complete lines judged at the end of the probe


def judge_tail(tail: bytes, size: int) -> tuple[TailHealth, Prognosis]:
    """Health and prognosis from a journal's last bytes (the whole file when it is small)."""
    if size == 0:
        return TailHealth.EMPTY, Prognosis.LOADS
    lines = tail.split(b"\n")
    torn = lines.pop()  # bytes after the last newline (b"" when the journal ends cleanly)
    if size > len(tail):
        lines = lines[1:]  # the first piece is cut by the probe: not a whole line
    health, prognosis = TailHealth.OK, Prognosis.LOADS
    pending = False  # a bad last line is skipped by Optuna; anything after it is fatal
    for line in lines[-LAST_LINES:]:
        if pending:
            prognosis = Prognosis.EVERY_LOAD_FAILS
        if sound_op(line) is not None:
            continue
        judged = classify(line + b"\n")
        if judged.problem is None:
            continue
        health = TailHealth.BAD_TAIL
        if judged.skippable:
            pending = True
        else:
            prognosis = Prognosis.EVERY_LOAD_FAILS
    if torn:
        health = TailHealth.TORN_TAIL
        if pending:
            prognosis = Prognosis.EVERY_LOAD_FAILS
    if health is not TailHealth.OK and prognosis is Prognosis.LOADS:
        prognosis = Prognosis.NEXT_WORKER_CRASHES
    if health is not TailHealth.OK and b"\x00" in tail:
        health = TailHealth.NUL_TAIL
    return health, prognosis


def probe_journal(path: str) -> JournalState:
    """The file at `path`: identity, size, whether it is an Optuna journal, tail health.

    One open and at most two preads. A symlinked journal is followed (a holder has the target
    open, and holders are matched by (device, inode)); it is opened only once stat said it is a
    regular file, with O_NONBLOCK in case it was swapped for a FIFO meanwhile.
    """
    try:
        st = os.lstat(path)
        alias = None
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(path)
            alias = os.path.basename(os.path.realpath(path))
    except OSError:
        return JournalState(exists=False)
    found = partial(JournalState, exists=True, size=st.st_size, mtime=st.st_mtime,
                    device=st.st_dev, inode=st.st_ino, alias=alias)  # fmt: skip
    if not stat.S_ISREG(st.st_mode):
        return found(health=TailHealth.NOT_A_FILE)
    head = tail = b""
    try:
        fd = open_nonblocking(path)
        try:
            tail = os.pread(fd, TAIL_PROBE, max(0, st.st_size - TAIL_PROBE))
            head = tail if st.st_size <= TAIL_PROBE else os.pread(fd, HEAD_BYTES, 0)
        finally:
            os.close(fd)
    except OSError:
        return found(health=TailHealth.UNREADABLE)
    health, prognosis = judge_tail(tail, st.st_size)
    # This keeps `poetry.lock`, `.git/index.lock`, YAML and text logs out of the report.
    looks = not head or is_journal_head(head)
    return found(health=health, prognosis=prognosis, looks_like_journal=looks)


def is_journal_file(path: str) -> bool:
    """A regular file that is empty or begins with an Optuna op (the rule of `is_journal_head`).
    Follows a symlink; never blocks on a FIFO."""
    try:
        fd = open_nonblocking(path)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.pread(fd, HEAD_BYTES, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return not head or is_journal_head(head)
