"""`journal-doctor demo`: a real crash, diagnosed, healed and resumed, in a temporary directory.

Yields steps for the CLI to render; runs real Optuna workers as subprocesses (the only place
optuna is imported is inside those workers) and leaves nothing behind.
"""

from __future__ import annotations

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
from ..locks.clean import clean
from ..locks.scan import scan
from ..model import CleanReport, ScanReport

DEMO_MIN_AGE = 1.0


@dataclass(frozen=True)
class DemoStep:
    title: str
    detail: str = ""
    scan: ScanReport | None = None
    clean: CleanReport | None = None


def _worker(journal: str, trials: int, grace: int = 30) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "journal_doctor.demo.worker",
            journal,
            "--trials",
            str(trials),
            "--grace",
            str(grace),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


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


def _crash_holding_lock(journal: str, procs: list[subprocess.Popen[bytes]]) -> tuple[int, int]:
    """Start busy workers and SIGKILL them until a kill leaves the lock. (pid, attempts)"""
    lock = journal + ".lock"
    for attempt in range(1, 41):
        before = _lines(journal)
        proc = _worker(journal, 100000)
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
        if os.path.lexists(lock):
            return proc.pid, attempt
    raise DemoError("no kill left the lock behind in 40 attempts")


def run_demo(trials: int = 3, compare: bool = False) -> Iterator[DemoStep]:
    workdir = tempfile.mkdtemp(prefix="journal-doctor-demo-")
    journal = os.path.join(workdir, "study.log")
    procs: list[subprocess.Popen[bytes]] = []
    try:
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
        try:
            out, err = resumed.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            raise DemoError("the resumed worker did not finish within 120 s") from None
        elapsed = time.monotonic() - started
        if resumed.returncode != 0:
            detail = err.decode(errors="replace").strip()[-300:]
            raise DemoError(f"the resumed worker failed: {detail}")
        yield DemoStep(
            "Resume",
            f"A resumed worker finished {trials} trials in {elapsed:.1f} s, Python and Optuna"
            " start-up included (without the doctor: 30 s of grace period first, forever on"
            f" Optuna <= 4.2 or with a dangling symlink lock). It reports: {out.decode().strip()}.",
        )
        from ..journal.trials import list_trials

        left = [t for t in list_trials(journal).health.open_trials if t.state == "RUNNING"]
        if left:
            numbers = ", ".join(str(t.number) for t in left)
            yield DemoStep(
                "journal-doctor trials",
                f"The killed worker left trial {numbers} RUNNING forever (JournalStorage has no"
                " heartbeat): `journal-doctor trials --retry` marks it FAIL and runs its"
                " parameters again.",
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
