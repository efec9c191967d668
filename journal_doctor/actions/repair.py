"""`repair`: rewrite a damaged journal so Optuna loads it, losing nothing that any worker saw.

Every line before the first damaged one is kept byte for byte, so a worker that read the journal
before the repair (and waits for the lock meanwhile) still finds its cached offsets valid. A torn
or NUL tail is cut; a fused line keeps its complete op; undecodable and non-op lines move to
`<journal>.quarantine` with their offsets. No good line is ever dropped: study and trial ids are
assigned by the order of CREATE ops, and a bad line was skipped by every writer that came after
it, so dropping it agrees with what they all saw.

The journal's own lock is held from the backup to the rename, as a guarded worker holds it
(`guard.lock.GuardedLock`: Optuna's protocol, so workers started meanwhile wait; a record naming
the doctor; a heartbeat, so neither Optuna's grace period nor another doctor breaks it).
"""

from __future__ import annotations

import base64
import enum
import errno
import json
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import BinaryIO

from ..errors import NoJournal, RepairRefused
from ..guard.lock import GuardedLock
from ..journal.check import Damage, JournalHealth, check_journal, open_journal
from ..journal.lines import iter_lines
from ..journal.ops import Problem, classify
from ..journal.optuna_api import file_backend_class, journal_storage_class, optuna_lock
from ..model import LockKind
from .in_use import refuse_if_in_use


class FixAction(str, enum.Enum):
    """What repair does with one piece of damage (`PlannedFix.action`)."""

    SALVAGE = "salvage"  # keep the complete op of a fused line, quarantine the fragment
    QUARANTINE = "quarantine"  # move the line to JOURNAL.quarantine
    TRUNCATE = "truncate"  # cut the torn tail (kept in quarantine)


@dataclass(frozen=True)
class PlannedFix:
    damage: Damage
    action: FixAction

    @property
    def sentence(self) -> str:
        d = self.damage
        if self.action is FixAction.SALVAGE:
            return (
                f"line {d.line}: keep the complete op at byte {d.salvage_offset} of the line,"
                f" quarantine the {d.salvage_offset}-byte fragment before it"
            )
        if self.action is FixAction.TRUNCATE:
            return f"cut the {d.length}-byte torn tail at byte {d.offset} (kept in quarantine)"
        return f"line {d.line} (byte {d.offset}): move to quarantine ({d.detail})"


@dataclass(frozen=True)
class RepairReport:
    journal: str
    before: JournalHealth
    plan: tuple[PlannedFix, ...]
    performed: bool
    after: JournalHealth | None = None
    backup: str | None = None
    quarantine: str | None = None
    verified: str = ""
    elapsed_seconds: float = 0.0

    def needs_attention(self) -> bool:
        """True when the journal is still damaged (exit code 1)."""
        return not self.before.healthy and not self.performed

    def _replace_with(self, done: _Done, after: JournalHealth, elapsed: float) -> RepairReport:
        return replace(self, performed=True, after=after, backup=done.backup,
                       quarantine=done.quarantine, verified=done.verified,
                       elapsed_seconds=elapsed)  # fmt: skip


_ACTION = {Problem.FUSED: FixAction.SALVAGE, Problem.TORN_TAIL: FixAction.TRUNCATE}


def plan_for(health: JournalHealth) -> tuple[PlannedFix, ...]:
    return tuple(
        PlannedFix(damage, _ACTION.get(damage.problem, FixAction.QUARANTINE))
        for damage in health.damage
    )


Confirm = Callable[[RepairReport], bool]
BeforeReplace = Callable[[str], None]


def _backup_path(journal: str) -> tuple[str, int]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        path = f"{journal}.{stamp}.bak" if n == 0 else f"{journal}.{stamp}-{n}.bak"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        return path, fd
    raise RepairRefused(f"{journal}: could not find a free backup name", journal=journal)


def _copy(src_fd: int, dst_fd: int) -> None:
    os.lseek(src_fd, 0, os.SEEK_SET)
    with open(src_fd, "rb", closefd=False) as src, open(dst_fd, "wb", closefd=False) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
    os.fsync(dst_fd)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Quarantine:
    """Writes each piece taken out of the journal as one JSON line of JOURNAL.quarantine."""

    def __init__(self, file: BinaryIO, journal: str, backup: str) -> None:
        self.file = file
        self.journal = os.fsencode(journal).decode("utf-8", "backslashreplace")
        self.backup = os.fsencode(backup).decode("utf-8", "backslashreplace")

    def put(self, line: int, offset: int, raw: bytes | None, problem: Problem, detail: str,
            length: int = 0) -> None:  # fmt: skip
        """A piece too big to hold in memory (raw None) is not copied: the record points at its
        bytes in the backup instead."""
        record: dict[str, object] = {
            "journal": self.journal,
            "repaired_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "line": line,
            "offset": offset,
            "length": len(raw) if raw is not None else length,
            "problem": problem.value,
            "detail": detail,
        }
        if raw is not None:
            record["bytes_b64"] = base64.b64encode(raw).decode("ascii")
        else:
            record["bytes_in_backup"] = self.backup
        self.file.write((json.dumps(record) + "\n").encode())


def _kept(line: bytes, number: int, offset: int, quarantine: _Quarantine) -> bytes:
    """What of one complete line goes into the repaired journal; the rest is quarantined."""
    judged = classify(line)
    if judged.problem is None:
        return line
    if judged.problem is Problem.FUSED and judged.salvage_offset is not None:
        start = judged.salvage_offset
        quarantine.put(number, offset, line[:start], Problem.FUSED, "fragment before a salvaged op")
        return line[start:]
    quarantine.put(number, offset, line, judged.problem, judged.detail)
    return b""


def _rewrite(src_fd: int, dst_fd: int, quarantine_fd: int, journal: str, backup: str) -> None:
    """Stream the journal into the repaired file, every good line byte for byte."""
    os.lseek(src_fd, 0, os.SEEK_SET)
    with (
        open(dst_fd, "wb", closefd=False, buffering=1 << 20) as out,
        open(quarantine_fd, "ab", closefd=False) as qfile,
    ):
        quarantine = _Quarantine(qfile, journal, backup)
        for number, (offset, line, length, complete) in enumerate(iter_lines(src_fd), 1):
            if line is not None and complete:
                out.write(_kept(line, number, offset, quarantine))
            elif not complete:
                # A torn tail: certainly no complete op, and Optuna skips it. One too big to copy
                # (1 GB without a newline) stays in the backup; the record says where.
                detail = "torn tail" if line is not None else "torn tail too big to copy"
                quarantine.put(number, offset, line, Problem.TORN_TAIL, detail, length)
            else:
                raise RepairRefused(
                    f"{journal}: line {number} is {length} bytes long; it cannot be checked in"
                    " bounded memory, so the doctor will not rewrite this journal.",
                    journal=journal,
                )
        out.flush()
        qfile.flush()
    os.fsync(dst_fd)
    os.fsync(quarantine_fd)


def verify_with_optuna(path: str) -> tuple[str, dict[str, int]]:
    """Load `path` with Optuna itself. Raises on failure (Optuna raises many types)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = file_backend_class()(path, lock_obj=optuna_lock(path, LockKind.FILE))
    storage = journal_storage_class()(backend)
    counts: dict[str, int] = {}
    studies = storage.get_all_studies()
    for study in studies:
        for trial in storage.get_all_trials(study._study_id, deepcopy=False):
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    total = sum(counts.values())
    summary = (
        f"Optuna {optuna.__version__} loads it: {len(studies)} study(ies), {total} trial(s)"
        f" ({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'})"
    )
    return summary, counts


def repair(
    journal: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    force: bool = False,
    confirm: Confirm | None = None,
    lock_kind: LockKind = LockKind.SYMLINK,
    before_replace: BeforeReplace | None = None,
) -> RepairReport:
    """Repair one journal; see the module docstring. Raises RepairRefused (journal untouched)."""
    journal = os.fspath(journal)
    started = time.monotonic()
    try:
        # Never through a symlink: the rename at the end would replace the link, not the file.
        before = check_journal(journal, follow_symlinks=False)
    except NoJournal:
        raise
    except OSError as err:
        raise RepairRefused(
            f"{journal}: {err.strerror or err}; give a regular journal file", journal=journal
        ) from None
    plan = plan_for(before)
    report = RepairReport(journal, before, plan, performed=False)
    if before.healthy:
        return report
    st = _stat_regular(journal)
    refuse_if_in_use(journal, st, "repair")
    if dry_run:
        return report
    if not force and (confirm is None or not confirm(report)):
        raise RepairRefused(f"{journal}: not repaired (not confirmed)", journal=journal)
    # Again, after the question: time has passed; now an orphaned lock is broken too.
    orphan_kind = refuse_if_in_use(journal, st, "repair", break_orphaned=True)
    done = _perform(journal, st, orphan_kind or lock_kind, before_replace)
    return report._replace_with(done, check_journal(journal), time.monotonic() - started)


@dataclass(frozen=True, kw_only=True)
class _Done:
    backup: str
    quarantine: str
    verified: str


def _perform(
    journal: str, st: os.stat_result, kind: LockKind, before_replace: BeforeReplace | None
) -> _Done:
    """Under the journal's own lock: back up, rewrite into a temporary file, verify it, and
    rename it over the journal if the journal is still the very file that was judged."""
    lock = GuardedLock(journal, kind)
    if not lock.try_acquire():
        raise RepairRefused(
            f"{lock.path}: a worker took the lock just now; stop the workers and retry.",
            journal=journal,
        )
    directory, name = os.path.split(journal)
    temp = os.path.join(directory, f".{name}.journal-doctor-{uuid.uuid4().hex}.tmp")
    try:
        backup, quarantine, locked_st = _write_repaired(journal, st, temp)
        verified = _verify(journal, temp, backup)
        if before_replace is not None:
            before_replace(journal)
        _same_journal_or_refuse(journal, locked_st)
        os.rename(temp, journal)
        _fsync_directory(directory)
    except BaseException:
        _remove_quietly(temp)
        raise
    finally:
        lock.release()
    return _Done(backup=backup, quarantine=quarantine, verified=verified)


def _write_repaired(journal: str, st: os.stat_result, temp: str) -> tuple[str, str, os.stat_result]:
    """The backup, the quarantine and the rewritten journal in `temp`."""
    src_fd, locked_st = open_journal(journal, follow_symlinks=False)
    try:
        if (locked_st.st_dev, locked_st.st_ino) != (st.st_dev, st.st_ino):
            raise RepairRefused(
                f"{journal}: replaced while the doctor looked at it; retry", journal=journal
            )
        backup, backup_fd = _backup_path(journal)
        try:
            _copy(src_fd, backup_fd)
        finally:
            os.close(backup_fd)
        quarantine = journal + ".quarantine"
        q_fd = os.open(quarantine, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        dst_fd = os.open(temp, flags, stat.S_IMODE(locked_st.st_mode))
        try:
            _rewrite(src_fd, dst_fd, q_fd, journal, backup)
        finally:
            os.close(dst_fd)
            os.close(q_fd)
    finally:
        os.close(src_fd)
    return backup, quarantine, locked_st


def _verify(journal: str, temp: str, backup: str) -> str:
    """The doctor's check and Optuna's own load agree that the rewritten journal is sound."""
    repaired = check_journal(temp)
    if not repaired.healthy:
        raise RepairRefused(
            f"{journal}: the rewritten journal is still damaged; kept as is", journal=journal
        )
    if repaired.newer_ops:
        # No Optuna here can load ops it does not know, before the repair or after it.
        codes = ", ".join(str(code) for code in repaired.newer_ops)
        return (
            f"the doctor's check passes; not loaded with Optuna, which does not know op code"
            f" {codes} (kept as written)"
        )
    try:
        verified, counts = verify_with_optuna(temp)
    except Exception as err:  # Optuna's replay raises many types; all mean "not loadable"
        raise RepairRefused(
            f"{journal}: Optuna cannot load the rewritten journal ({type(err).__name__}:"
            f" {err}); the journal is untouched, the backup is {backup}",
            journal=journal,
        ) from None
    if counts.get("COMPLETE", 0) != repaired.trials_by_state["COMPLETE"]:
        raise RepairRefused(
            f"{journal}: Optuna and the doctor disagree on COMPLETE trials", journal=journal
        )
    return verified


def _stat_regular(journal: str) -> os.stat_result:
    fd, st = open_journal(journal, follow_symlinks=False)
    os.close(fd)
    return st


def _same_journal_or_refuse(journal: str, expected: os.stat_result) -> None:
    """Right before the rename: still the same regular file, no byte added without the lock."""
    try:
        now = os.lstat(journal)
    except FileNotFoundError:
        raise RepairRefused(
            f"{journal}: vanished during the repair; nothing replaced", journal=journal
        ) from None
    same = (
        stat.S_ISREG(now.st_mode)
        and (now.st_dev, now.st_ino) == (expected.st_dev, expected.st_ino)
        and now.st_size == expected.st_size
    )
    if not same:
        raise RepairRefused(
            f"{journal}: changed during the repair (replaced, turned into a symlink, or written"
            " without the lock); nothing replaced",
            journal=journal,
        )


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise
