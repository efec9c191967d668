"""Fault-injection soak: real Optuna workers SIGKILLed, SIGSTOPped and SIGCONTed at random.

Two journals (one per lock kind), two workers each. A chaos loop kills, stops and continues
random workers; after each kill the pre-resume step runs (`clean --force --wait`, and `repair
--force` when `check` says damaged) and the worker is restarted. Workers log every trial they
completed to a side file. At the end every logged COMPLETE trial must be in the journal with the
same value, the journal must load in Optuna, no lock may be left, and no worker may have found
its lock taken from under it ("did not possess lock": what a wrongly broken lock does).

    JD_SOAK_SECONDS=600 python -m pytest -m soak -s     # a long run; CI runs 20 s
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

from helpers import PYTHON, poll, writes_journal

pytestmark = pytest.mark.soak
SECONDS = float(os.environ.get("JD_SOAK_SECONDS", "20"))
MAX_STOP = 2.0  # well under --min-age (5 s) and Optuna's grace period (30 s)


@dataclass
class Worker:
    journal: Path
    lock: str
    log: Path
    stderr: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped_at: float | None = None

    def start(self) -> None:
        err = open(self.stderr, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "journal_doctor.demo.worker", str(self.journal), "--lock", self.lock,
             "--trials", "100000", "--log", str(self.log)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )  # fmt: skip
        err.close()
        self.stopped_at = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Tally:
    kills: int = 0
    stops: int = 0
    conts: int = 0
    locks_healed: int = 0
    repairs: int = 0
    restarts: int = 0
    clean_runs: int = 0
    holder_log: list[dict[str, object]] = field(default_factory=list)


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "journal_doctor", *args], capture_output=True, text=True, timeout=120
    )


def pre_resume(journal: Path, tally: Tally, wait: str) -> None:
    result = doctor("clean", "--force", "--wait", wait, "--json", str(journal.parent))
    assert "Traceback" not in result.stderr, result.stderr
    tally.clean_runs += 1
    document = json.loads(result.stdout)
    tally.locks_healed += len(document["removed"])
    for lock in document["locks"]:
        if lock["path"] in document["removed"]:
            # What the doctor saw of a lock it removed: no holder, orphaned.
            assert lock["holders"] == [], lock
            assert lock["verdict"] == "orphaned", lock
    if doctor("check", str(journal)).returncode == 1:
        for _ in range(20):
            repaired = doctor("repair", "--force", str(journal))
            assert "Traceback" not in repaired.stderr
            if repaired.returncode == 0:
                tally.repairs += 1
                break
            time.sleep(0.2)  # other workers have it open; try again


def holders_of(journal: Path, workers: list[Worker]) -> list[int]:
    """Pids of live workers with the journal open for writing right now (logged at each
    kill and stop, to compare with what clean removed)."""
    return [
        w.proc.pid
        for w in workers
        if w.proc is not None
        and w.alive
        and w.journal == journal
        and writes_journal(w.proc.pid, journal)
    ]


def test_soak(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("JD_SOAK_SEED", "20261128")))
    workers: list[Worker] = []
    for kind in ("symlink", "open"):
        directory = tmp_path / kind
        directory.mkdir()
        for i in range(2):
            workers.append(
                Worker(directory / "j.log", kind, directory / f"done-{i}.log",
                       directory / f"stderr-{i}.log")
            )  # fmt: skip
    for worker in workers:
        worker.start()
    assert poll(lambda: all(w.journal.exists() for w in workers), 60)
    tally = Tally()
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.05, 0.4))  # chaos timing, not a wait for a condition
            now = time.monotonic()
            for worker in workers:  # never leave a worker stopped long
                if worker.stopped_at is not None and now - worker.stopped_at > MAX_STOP:
                    assert worker.proc is not None
                    worker.proc.send_signal(signal.SIGCONT)
                    worker.stopped_at = None
                    tally.conts += 1
            worker = rng.choice(workers)
            action = rng.random()
            assert worker.proc is not None
            holders = holders_of(worker.journal, workers)
            if action < 0.35 and worker.alive:
                tally.holder_log.append({"kill": worker.proc.pid, "holders": holders})
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait()
                tally.kills += 1
                pre_resume(worker.journal, tally, wait="3")
                worker.start()
                tally.restarts += 1
            elif action < 0.7 and worker.alive and worker.stopped_at is None:
                tally.holder_log.append({"stop": worker.proc.pid, "holders": holders})
                worker.proc.send_signal(signal.SIGSTOP)
                worker.stopped_at = time.monotonic()
                tally.stops += 1
            elif worker.stopped_at is not None:
                worker.proc.send_signal(signal.SIGCONT)
                worker.stopped_at = None
                tally.conts += 1
            elif not worker.alive:  # it crashed: restart after the pre-resume step
                pre_resume(worker.journal, tally, wait="3")
                worker.start()
                tally.restarts += 1
    finally:
        for worker in workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.send_signal(signal.SIGCONT)
                worker.proc.wait()

    trials = 0
    for journal in {w.journal for w in workers}:
        pre_resume(journal, tally, wait="30")
        assert poll(lambda j=journal: doctor("check", str(j)).returncode == 0, 30)
        storage = JournalStorage(
            JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal)))
        )
        study = optuna.load_study(study_name="doctor-demo", storage=storage)
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for worker in (w for w in workers if w.journal == journal):
            if not worker.log.exists():
                continue
            for line in worker.log.read_text().splitlines():
                number, value = line.split()
                trial = by_number[int(number)]
                assert trial.state.name == "COMPLETE", (journal, number)
                assert trial.value == float(value)
                trials += 1
        scan = doctor("scan", "--json", str(journal.parent))
        assert json.loads(scan.stdout)["locks"] == []
    crashes = {}
    for worker in workers:
        text = worker.stderr.read_text(errors="replace") if worker.stderr.exists() else ""
        assert "did not possess lock" not in text, text[-2000:]
        crashes[str(worker.stderr.name)] = text.count("Traceback")
    kills_while_writing = sum(
        1
        for entry in tally.holder_log
        if entry.get("kill") in entry["holders"]  # type: ignore[operator]
    )
    print(
        f"\nsoak {SECONDS:.0f}s: kills {tally.kills} ({kills_while_writing} while writing),"
        f" stops {tally.stops}, conts {tally.conts},"
        f" restarts {tally.restarts}, clean runs {tally.clean_runs}, locks healed"
        f" {tally.locks_healed}, repairs {tally.repairs}, logged trials verified {trials},"
        f" worker crashes {sum(crashes.values())}"
    )
    assert tally.kills > 0
    assert trials > 0
