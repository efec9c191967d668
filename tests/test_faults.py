"""Faults a fleet meets, made for real: a journal whose filesystem fills up (or that reaches the
file size limit) mid-study, a holder frozen inside its hold whose lock another host breaks and
whose trial the fleet fails meanwhile. Each guarded run is compared with plain Optuna in the same
fault: the journal is left as it was, the worker's error names the cause, never Optuna's own
`AssertionError: Should not reach.`"""

from __future__ import annotations

import fcntl
import os
import random
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from journal_doctor.journal.check import check_journal

from helpers import PYTHON, Workers, need_root, poll, writes_journal

pytestmark = pytest.mark.slow

# Recorded, so that a failing run can be made again: JD_FAULT_SEED=<seed> pytest ...
SEED = int(os.environ.get("JD_FAULT_SEED", random.SystemRandom().randrange(2**32)))


def worker(journal: Path, *options: str) -> list[str]:
    return [PYTHON, "-m", "journal_doctor.demo.worker", str(journal), "--trials", "100000",
            *options]  # fmt: skip


def limited_to(size: int) -> None:
    """In the worker, before exec: writes past `size` bytes fail with EFBIG (Python ignores
    SIGXFSZ), part of the write taken first, as a filling filesystem does."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def load(journal: Path) -> optuna.Study:
    return optuna.load_study(
        study_name="doctor-demo", storage=JournalStorage(JournalFileBackend(str(journal)))
    )


def assert_as_it_was(journal: Path) -> None:
    """No torn line: every line whole, the journal healthy, the study loads."""
    data = journal.read_bytes()
    assert data.endswith(b"\n"), data[-200:]
    health = check_journal(str(journal))
    assert health.healthy, health
    assert health.torn_tail_bytes == 0, health
    load(journal)


def limits(kind: str) -> Iterator[int]:
    rng = random.Random(f"{SEED}-{kind}")
    # The study's creation takes about 600 bytes; each trial about 400: limits that land in
    # every op of a trial, somewhere past the first few trials.
    for _ in range(3):
        yield rng.randrange(2_000, 8_000)


@pytest.mark.parametrize("kind", ["symlink", "open"])
def test_a_guarded_append_past_the_file_size_limit_leaves_the_journal_whole(
    tmp_path: Path, kind: str
) -> None:
    for limit in limits(kind):
        journal = tmp_path / f"j{limit}.log"
        run = subprocess.run(
            worker(journal, "--guarded", "--lock", kind), capture_output=True, text=True,
            timeout=120, preexec_fn=lambda limit=limit: limited_to(limit), check=False,
        )  # fmt: skip
        context = f"seed {SEED}, limit {limit}:\n{run.stderr[-3000:]}"
        assert run.returncode != 0, context
        assert "JournalWriteFailed" in run.stderr, context
        assert f"{journal} is as large as" in run.stderr, context
        assert "nothing was written" in run.stderr, context
        assert "Should not reach" not in run.stderr, context
        assert_as_it_was(journal)
        assert journal.stat().st_size <= limit


def test_plain_optuna_past_the_file_size_limit_tears_the_journal(tmp_path: Path) -> None:
    """The baseline the test above is measured against: the same fault, plain Optuna."""
    journal = tmp_path / "j.log"
    run = subprocess.run(
        worker(journal), capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=lambda: limited_to(5_000),
    )  # fmt: skip
    assert run.returncode != 0
    assert not journal.read_bytes().endswith(b"\n"), "the fault tore nothing"


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a filesystem that fills up for real (ENOSPC)."""
    need_root("root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("kind", ["symlink", "open"])
def test_a_guarded_worker_on_a_filesystem_that_fills_up_leaves_the_journal_whole(
    small_tmpfs: Path, kind: str
) -> None:
    journal = small_tmpfs / "j.log"
    run = subprocess.run(
        worker(journal, "--guarded", "--lock", kind), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    context = run.stderr[-3000:]
    assert run.returncode != 0, context
    assert f"the filesystem holding {journal} is full: nothing was written" in run.stderr, context
    assert "Should not reach" not in run.stderr, context
    assert_as_it_was(journal)


def running_with_params(journal: Path) -> list[int]:
    """Numbers of the RUNNING trials whose parameter is written: a worker holding the lock
    then is writing that trial's end."""
    trials = load(journal).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t.number for t in trials if t.params]


def test_a_worker_whose_lock_was_broken_and_trial_failed_while_frozen_goes_on(
    tmp_path: Path,
) -> None:
    """Frozen inside the hold of its trial's end (as a host cut off is), before its write;
    meanwhile another host breaks its lock and the fleet fails its trial. Continued, it writes,
    finds the lock gone, reads the journal again, says its result was not recorded, and goes on
    with the next trial, where Optuna's own flow raised `AssertionError: Should not reach.`"""
    journal = tmp_path / "j.log"
    mark = tmp_path / "returned"
    workers = Workers(extra=("--guarded", "--heartbeat", "0.2", "--guard-grace", "1",
                             "--sleep", "0.05", "--mark", str(mark)))  # fmt: skip
    try:
        frozen = workers.start_busy(journal)
        number = freeze_before_a_trials_end(frozen, journal, mark)
        os.rename(f"{journal}.lock", tmp_path / "broken")  # another host's break, past grace
        load(journal).tell(number, state=TrialState.FAIL)  # the fleet fails the silent trial
        later = lines_of(journal) + 20
        frozen.send_signal(signal.SIGCONT)
        assert poll(lambda: lines_of(journal) > later or frozen.poll() is not None, 60)
        frozen.send_signal(signal.SIGTERM)
        _, err = frozen.communicate(timeout=30)
        log = err.decode()
        assert lines_of(journal) > later, log[-3000:]  # it went on
        assert "Should not reach" not in log, log[-3000:]
        assert "LockLost" in log, log[-3000:]
        assert f"trial {number} was FAIL in the journal already" in log, log[-3000:]
        assert load(journal).trials[number].state is TrialState.FAIL
        assert_as_it_was(journal)
    finally:
        workers.stop_all()


def freeze_before_a_trials_end(proc: subprocess.Popen[bytes], journal: Path, mark: Path) -> int:
    """Catch the worker holding its lock, about to write its trial's end, and SIGSTOP it there.
    Once its objective returned (it writes `mark`), the test takes a byte-range lock on the
    journal, as a stalled writer on another host holds one: the worker's fenced append waits
    for it inside its hold. Caught in another write (the test was late), it tries the next
    trial. The trial's number; the worker is left stopped, the byte-range lock released."""
    with open(journal, "ab") as fence:
        for _ in range(50):
            done = mark.read_text() if mark.exists() else ""
            assert poll(lambda: mark.exists() and mark.read_text() != done, 30, interval=0.0002)  # noqa: B023
            fcntl.lockf(fence, fcntl.LOCK_EX)
            number = int(mark.read_text())
            assert poll(lambda: writes_journal(proc.pid, journal), 10)  # waiting in its hold
            proc.send_signal(signal.SIGSTOP)
            assert poll(lambda: state(proc.pid) in ("T", "t"), 5)
            fcntl.lockf(fence, fcntl.LOCK_UN)
            if running_with_params(journal) == [number]:
                return number
            proc.send_signal(signal.SIGCONT)
    raise AssertionError("never caught the worker writing a trial's end")


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def lines_of(journal: Path) -> int:
    with open(journal, "rb") as f:
        return sum(1 for _ in f)
