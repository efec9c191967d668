"""`journal-doctor demo`: a real crash, diagnosed, healed and resumed, in a temporary directory.

Yields steps for the CLI to render; runs real Optuna workers as subprocesses (the only place
optuna is imported is inside those workers) and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import DoctorError
from ..journal.check import JournalHealth, check_journal
from ..locks.clean import clean
from ..locks.scan import scan
from ..model import CleanReport, ScanReport
from ..protocol.record import lock_record

DEMO_MIN_AGE = 1.0


@dataclass(frozen=True)
class DemoStep:
    title: str
    detail: str = ""
    scan: ScanReport | None = None
    clean: CleanReport | None = None


def _worker(
    journal: str, trials: int, grace: int = 30, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "journal_doctor.demo.worker", journal, "--trials", str(trials),
         "--grace", str(grace), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[bytes], what: str) -> str:
    """Wait for a worker; its last words, or a DemoError with its real error."""
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        raise DemoError(f"{what} did not finish within 120 s") from None
    if proc.returncode != 0:
        raise DemoError(f"{what} failed: {err.decode(errors='replace').strip()[-300:]}")
    return out.decode().strip()


def _lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


class DemoError(DoctorError):
    """The demo could not show what it shows (a worker failed, or took too long)."""


def _running(journal: str) -> list[int]:
    """The numbers of the trials RUNNING in the journal (none before it exists)."""
    try:
        return _running_in(check_journal(journal, open_trials=True))
    except OSError:
        return []


def _running_in(health: JournalHealth) -> list[int]:
    return [t.number for t in health.open_trials if t.state == "RUNNING"]


def _crash_holding_lock(
    journal: str,
    procs: list[subprocess.Popen[bytes]],
    extra: tuple[str, ...] = (),
    mid_trial: bool = False,
) -> tuple[int, int]:
    """Start busy workers and SIGKILL them until a kill leaves the lock (and, `mid_trial`, a
    trial RUNNING: a kill can land on the write that completes one). With `mid_trial` the
    workers are guarded and the lock must also carry its holder's record: a kill between the
    symlink and its record leaves a lock a waiter may only break after the grace period, and
    the demo shows the case it breaks at once. (pid, attempts)"""
    lock = journal + ".lock"
    for attempt in range(1, 41):
        running = len(_running(journal)) if mid_trial else 0
        before = _lines(journal)
        proc = _worker(journal, 100000, extra=extra)
        procs.append(proc)

        def writing(before: int = before, proc: subprocess.Popen[bytes] = proc) -> bool:
            return _lines(journal) > before + 5 or proc.poll() is not None

        if not _wait_for(writing, 60):
            raise DemoError("the Optuna worker did not start writing within 60 s")
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise DemoError(f"the Optuna worker failed: {err.strip()[-300:]}")
        _wait_for(lambda: os.path.lexists(lock), 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not os.path.lexists(lock):
            continue
        if not mid_trial or (len(_running(journal)) > running and _has_record(lock)):
            return proc.pid, attempt
    raise DemoError("no kill left the lock behind in 40 attempts")


def _has_record(lock: str) -> bool:
    try:
        return lock_record(lock)[1] is not None
    except OSError:
        return False


GUARDED = ("--guarded", "--sleep", "0.05")


@contextlib.contextmanager
def _workspace() -> Iterator[tuple[str, str, list[subprocess.Popen[bytes]]]]:
    """(directory, journal, workers) of one demo; no worker and no file outlives it."""
    workdir = tempfile.mkdtemp(prefix="journal-doctor-demo-")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield workdir, os.path.join(workdir, "study.log"), procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def run_guarded_demo(trials: int = 3) -> Iterator[DemoStep]:
    """The same crash with journal_doctor.storage() in the workers: no clean-up step at all."""
    with _workspace() as (workdir, journal, procs):
        yield DemoStep("Workspace", workdir)
        pid, attempts = _crash_holding_lock(journal, procs, GUARDED, mid_trial=True)
        killed = _running(journal)
        yield DemoStep(
            "Crash",
            f"A worker using journal_doctor.storage() (pid {pid}) was SIGKILLed holding"
            f" {journal}.lock, in the middle of trial {_numbers(killed)} (attempt {attempts}).",
        )
        yield DemoStep("journal-doctor scan (its record names the dead holder)", scan=scan(workdir))
        started = time.monotonic()
        resumed = _worker(journal, trials, extra=GUARDED)
        procs.append(resumed)
        said = _finish(resumed, "the resumed guarded worker")
        yield DemoStep(
            "Resume",
            f"A resumed guarded worker broke the dead holder's lock at once and finished"
            f" {trials} trials in {time.monotonic() - started:.1f} s, Python and Optuna start-up"
            f" included. It reports: {said}.",
        )
        yield DemoStep("The killed trial", _retried(journal, killed))


def _numbers(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _retried(journal: str, killed: list[int]) -> str:
    """What became of the trials the kills left RUNNING (read without optuna)."""
    health = check_journal(journal, open_trials=True)
    left = _running_in(health)
    if left:
        return f"Trial {_numbers(left)} is still RUNNING: no heartbeat has proven its worker dead."
    failed = health.trials_by_state["FAIL"]
    return (
        f"Trial {_numbers(killed)} is no longer RUNNING: its worker's heartbeat proved it dead, so"
        " the next study.optimize failed it and RetryFailedTrialCallback ran its parameters"
        f" again. Nothing is left RUNNING ({failed} FAIL in all: every kill inside a trial leaves"
        " one, the attempts whose kill missed the lock included)."
    )


def run_demo(trials: int = 3, compare: bool = False) -> Iterator[DemoStep]:
    with _workspace() as (workdir, journal, procs):
        yield DemoStep("Workspace", workdir)
        pid, attempts = _crash_holding_lock(journal, procs)
        yield DemoStep(
            "Crash",
            f"An Optuna worker (pid {pid}) was SIGKILLed while holding {journal}.lock"
            f" (attempt {attempts}; a kill leaves the lock about 3 times in 4).",
        )
        if compare:
            started = time.monotonic()
            alone = _worker(journal, trials)
            procs.append(alone)
            alone.communicate()  # drains its warnings, so a full pipe never stalls it
            yield DemoStep(
                "Optuna alone",
                f"A resumed worker needed {time.monotonic() - started:.1f} s for {trials} trials"
                " (Optuna's 30 s grace period; on Optuna <= 4.2 it would wait forever).",
            )
            pid, attempts = _crash_holding_lock(journal, procs)
            yield DemoStep("Crash again", f"Worker {pid} SIGKILLed holding the lock.")
        # The demo lowers --min-age to 1 s so it need not wait the default 5 s.
        _wait_for(lambda: time.time() - os.lstat(journal + ".lock").st_mtime > DEMO_MIN_AGE, 5)
        report = scan([workdir], min_age=DEMO_MIN_AGE)
        yield DemoStep(f"journal-doctor scan --min-age {DEMO_MIN_AGE:g}", scan=report)
        started = time.monotonic()
        cleaned = clean([workdir], force=True, min_age=DEMO_MIN_AGE)
        yield DemoStep(
            f"journal-doctor clean --force --min-age {DEMO_MIN_AGE:g}",
            f"took {time.monotonic() - started:.3f} s",
            clean=cleaned,
        )
        started = time.monotonic()
        resumed = _worker(journal, trials)
        procs.append(resumed)
        said = _finish(resumed, "the resumed worker")
        yield DemoStep(
            "Resume",
            f"A resumed worker finished {trials} trials in {time.monotonic() - started:.1f} s,"
            " Python and Optuna start-up included (without the doctor: 30 s of grace period"
            f" first, forever on Optuna <= 4.2 or with a dangling symlink lock). It reports:"
            f" {said}.",
        )
        left = _running(journal)
        if left:
            yield DemoStep(
                "journal-doctor trials",
                f"The killed worker left trial {_numbers(left)} RUNNING forever (JournalStorage"
                " has no heartbeat): with no worker running, `journal-doctor trials --retry"
                " --force` marks it FAIL and runs its parameters again.",
            )
