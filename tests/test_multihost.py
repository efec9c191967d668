"""Many hosts on a real network filesystem: the two-host bed (tests/multihost/).

hostB serves a directory over sftp; hostA mounts it with sshfs. Holders run on hostA (through
the mount); the doctor and the guarded workers judge them from hostA and from hostB. A host's
death is its pid namespace's init killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from helpers import PYTHON, poll, require, running_trials

pytestmark = pytest.mark.slow
BED = Path(__file__).parent / "multihost"
GRACE = 3.0  # the guarded holders' grace period here (the default is 10 s)
SHARED_MIN_AGE = 4.0  # the doctor's, for plain locks where holders are invisible

HOLD = """
import os, sys, time
mode, journal = sys.argv[1], sys.argv[2]
if mode == "guarded":
    from journal_doctor.guard.lock import GuardedLock
    lock = GuardedLock(journal, heartbeat_interval=0.5, grace_period=float(sys.argv[3]))
else:
    from journal_doctor.journal.optuna_api import optuna_lock
    from journal_doctor.model import LockKind
    lock = optuna_lock(journal, LockKind.SYMLINK)
lock.acquire()
f = open(journal, "ab")  # a holder in the middle of its write
print("held", os.getpid(), flush=True)
time.sleep(3600)
"""


@dataclass
class Bed:
    state: Path
    share: Path  # on hostB
    mnt: Path  # on hostA

    def env(self) -> dict[str, str]:
        return {**os.environ, "JD_TESTBED": str(self.state), "JD_SHARE": str(self.share),
                "JD_MNT": str(self.mnt)}  # fmt: skip

    def script(self, name: str, *args: str, **env: str) -> None:
        subprocess.run([str(BED / name), *args], env={**self.env(), **env}, check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    def init(self, host: str) -> int:
        return int((self.state / "run" / f"init.{host}").read_text())

    def on(self, host: str, *cmd: str, cwd: str = "/", **kw: object) -> subprocess.Popen[str]:
        """A process on that host: its network, pid, mount and uts namespaces. (The directory
        is entered inside them: nsenter's --wd would look it up in this host's mounts.)"""
        return subprocess.Popen(
            ["nsenter", "-t", str(self.init(host)), "-n", "-p", "-m", "-u", "--wd=/", "--",
             "sh", "-c", 'cd "$0" && exec "$@"', cwd, *cmd], text=True,
            **kw,  # type: ignore[call-overload]
        )  # fmt: skip

    def run(self, host: str, *cmd: str, cwd: str = "/") -> subprocess.CompletedProcess[str]:
        proc = self.on(host, *cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def doctor(self, host: str, *args: str) -> dict[str, object]:
        result = self.run(host, PYTHON, "-m", "journal_doctor", *args, "--json")
        assert "Traceback" not in result.stderr, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def kill_host(
        self, host: str, stopped: tuple[subprocess.Popen[str], psutil.Process] | None = None
    ) -> None:
        """All of that host's processes die at once; returns when its init is gone. `stopped`:
        a stopped process there, and the nsenter that started it, which stopped itself with it:
        the host's init is gone only once that process is reaped, so nsenter is continued once
        its child is dead (continued before, it would continue the child)."""
        init = self.init(host)
        os.kill(init, signal.SIGKILL)
        if stopped is not None:
            relay, child = stopped
            assert poll(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE)
            relay.send_signal(signal.SIGCONT)
        assert poll(lambda: not os.path.exists(f"/proc/{init}"), 10)

    def revive_a(self) -> None:
        """hostA boots again and mounts the share (its old mount died with it)."""
        self.script("host_up.sh", "hostA", JD_HIDE=str(self.share.parent))
        for _ in range(3):
            try:
                self.script("mount.sh")
                return
            except subprocess.CalledProcessError as err:
                failure = err.stderr.decode()[-300:]
                time.sleep(0.5)  # sshd may still be closing the dead client's session
        raise AssertionError(f"hostA could not mount the share again: {failure}")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if os.geteuid() != 0:
        require("multihost", "the two-host bed needs root (network and pid namespaces)")
    for tool in ("sshfs", "sshd", "ip", "nsenter", "fusermount3"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            require("multihost", f"{tool} is not installed (apt-get install sshfs"
                    " openssh-server iproute2)")  # fmt: skip
    if not os.path.exists("/dev/fuse"):
        require("multihost", "no /dev/fuse on this machine")
    name = uuid.uuid4().hex[:8]
    made = Bed(tmp_path_factory.mktemp("bed"), Path(f"/srv/jd-{name}"), Path(f"/mnt/jd-{name}"))
    try:
        made.script("setup.sh")
    except subprocess.CalledProcessError as err:
        made.script("teardown.sh")
        require("multihost", f"the bed did not start: {err.stderr.decode()[-500:]}")
    try:
        yield made
    finally:
        made.script("teardown.sh")
        shutil.rmtree(made.share, ignore_errors=True)
        shutil.rmtree(made.mnt, ignore_errors=True)


@pytest.fixture
def study(bed: Bed) -> Iterator[str]:
    """A fresh directory in the share; its name (the same on both hosts)."""
    name = f"s-{uuid.uuid4().hex[:8]}"
    (bed.share / name).mkdir()
    try:
        yield name
    finally:
        shutil.rmtree(bed.share / name, ignore_errors=True)


def hold(bed: Bed, study: str, mode: str) -> tuple[subprocess.Popen[str], psutil.Process]:
    """A holder on hostA, through the sshfs mount, with the journal open to write; and the
    holder itself (nsenter forks into the pid namespace: signals must go to its child)."""
    cwd = str(bed.mnt / study)
    proc = bed.on("hostA", PYTHON, "-c", HOLD, mode, "j.log", str(GRACE), cwd=cwd,
                  stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    word, _ = proc.stdout.readline().split()
    assert word == "held"
    (holder,) = [p for p in psutil.Process(proc.pid).children(recursive=True)
                 if "python" in p.name()]  # fmt: skip
    return proc, holder


def judged(bed: Bed, host: str, study: str) -> dict[str, object]:
    """clean --force from that host. On hostB the share is plain ext4 served over sftp, which
    no host can detect: there the doctor is told (--shared), as the README says to."""
    root = str((bed.mnt if host == "hostA" else bed.share) / study)
    shared = ["--shared"] if host == "hostB" else []
    document = bed.doctor(host, "clean", "--force", *shared, "--shared-min-age",
                          str(SHARED_MIN_AGE), root)  # fmt: skip
    (lock,) = document["locks"]  # type: ignore[misc]
    lock["removed"] = bool(document["removed"])
    return lock  # type: ignore[no-any-return]


# (state, mode, seen from) -> (verdict, removed); `after` the grace/shared ages ran out.
MATRIX = [
    ("live", "guarded", "hostA", "active", False),
    ("live", "guarded", "hostB", "active", False),
    ("live", "plain", "hostA", "active", False),
    ("live", "plain", "hostB", "active", False),  # sftp-server writes it for hostA's holder
    ("frozen", "guarded", "hostA", "stuck", False),
    # sftp-server keeps hostA's open file open on hostB: whatever the heartbeat says, a
    # writer is seen, and the lock is kept (fail closed; a kernel NFS server has no such
    # process, and there the heartbeat's age decides).
    ("frozen", "guarded", "hostB", "active", False),
    ("frozen", "plain", "hostA", "stuck", False),
    ("frozen", "plain", "hostB", "active", False),  # sftp-server still has it open to write
    ("killed", "guarded", "hostA", "orphaned", True),  # at once: /proc shows the pid gone
    ("killed", "guarded", "hostB", "orphaned", True),
    ("killed", "plain", "hostA", "orphaned", True),  # past --shared-min-age (fuse.sshfs)
    ("killed", "plain", "hostB", "orphaned", True),
    ("host died", "guarded", "hostB", "orphaned", True),
    ("host died", "plain", "hostB", "orphaned", True),
]


@pytest.mark.parametrize(("state", "mode", "seen_from", "verdict", "removed"), MATRIX)
def test_verdict_matrix(
    bed: Bed, study: str, state: str, mode: str, seen_from: str, verdict: str, removed: bool
) -> None:
    proc, holder = hold(bed, study, mode)
    try:
        if state == "frozen":
            holder.suspend()
        elif state == "killed":
            holder.kill()
            proc.wait()
        elif state == "host died":
            bed.kill_host("hostA")
        if state != "live":
            time.sleep(max(GRACE, SHARED_MIN_AGE) + 1)  # the ages that decide, run out
        lock = judged(bed, seen_from, study)
        print(f"\nMATRIX | {state} | {mode} | {seen_from} | {lock['verdict']} | "
              f"{'removed' if lock['removed'] else 'kept'} | {lock['reason']}")  # fmt: skip
        assert (lock["verdict"], lock["removed"]) == (verdict, removed), lock["reason"]
        if mode == "guarded":
            record = lock["record"]
            assert isinstance(record, dict)
            assert record["host"] == "hostA"  # the doctor on either host names the holder's
        if state == "live":
            assert os.path.lexists(bed.share / study / "j.log.lock")  # never a live lock
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            holder.kill()
            holder.resume()
        proc.send_signal(signal.SIGCONT)  # nsenter stops itself when its child stops
        proc.wait()
        if state == "host died":
            bed.revive_a()


def freeze_inside_a_trial(holder: psutil.Process, lock: Path, journal: Path) -> bool:
    """Stop `holder` while it holds the lock inside a trial (writing a parameter or the final
    state): True once it is stopped so. A hold lasts milliseconds, so the stop is made the
    moment the lock is seen, and tried again (the holder continued) when it landed after the
    hold, or inside the hold that creates the trial (no trial RUNNING yet)."""
    for _ in range(300):
        if not poll(lambda: os.path.lexists(lock), 10, interval=0.0002):
            return False
        holder.suspend()
        assert poll(lambda: all_stopped(holder.pid), 10, interval=0.0005)
        if os.path.lexists(lock) and running_trials(journal) > 0:
            return True
        holder.resume()
        assert poll(lambda: not os.path.lexists(lock), 10, interval=0.0005)
    return False


def all_stopped(pid: int) -> bool:
    """Every thread of `pid` stopped (a thread inside a FUSE request stops when it returns)."""
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            states.append(stat.read().rsplit(")", 1)[1].split()[0])
    return all(state in "tT" for state in states)


def test_a_surviving_hosts_guarded_worker_takes_over_after_the_other_host_dies(
    bed: Bed, study: str, tmp_path: Path
) -> None:
    """hostA's guarded worker dies with its host while it holds the lock and runs a trial;
    hostB's guarded worker breaks the lock within the grace period and fails and retries the
    trial by itself."""
    cwd = str(bed.mnt / study)
    worker = [PYTHON, "-m", "journal_doctor.demo.worker", "j.log", "--guarded",
              "--guard-grace", str(GRACE), "--heartbeat", "0.5"]  # fmt: skip
    journal = bed.share / study / "j.log"
    lock = bed.share / study / "j.log.lock"
    for attempt in range(5):  # each a boot of hostA
        with (tmp_path / f"victim-{attempt}.err").open("w+") as err:
            victim = bed.on("hostA", *worker, "--trials", "1000", "--sleep", "0.3", cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
            try:
                assert poll(lambda: journal.exists() and journal.stat().st_size > 2000, 60)
                (holder,) = [p for p in psutil.Process(victim.pid).children(recursive=True)
                             if "python" in p.name()]  # fmt: skip
                held = freeze_inside_a_trial(holder, lock, journal)
                died = time.monotonic()
                bed.kill_host("hostA", stopped=(victim, holder))
            finally:
                victim.kill()
                victim.wait()
            err.seek(0)
            assert victim.returncode == -signal.SIGKILL, f"the worker failed: {err.read()[-2000:]}"
        if held:
            break
        bed.revive_a()  # every freeze landed after the hold ended: again
    else:
        raise AssertionError("hostA never died holding the lock inside a trial in 5 tries")
    try:
        survivor = bed.run("hostB", *worker, "--trials", "2", cwd=str(bed.share / study))
        took = time.monotonic() - died
    finally:
        bed.revive_a()
    assert survivor.returncode == 0, survivor.stderr[-2000:]
    print(f"\nsurviving host's worker finished 2 trials {took:.1f} s after hostA died"
          f" (grace period {GRACE:g} s)")  # fmt: skip
    assert took <= GRACE + 5
    states = subprocess.run(
        [PYTHON, "-c", "import sys, optuna, journal_doctor; s = optuna.load_study("
         "study_name='doctor-demo', storage=journal_doctor.storage(sys.argv[1]));"
         "print(' '.join(t.state.name for t in s.trials))", str(journal)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "RUNNING" not in states
    assert states.count("FAIL") == 1  # hostA's trial, failed by its worker's stale heartbeat


@pytest.mark.parametrize("lock", ["symlink", "open"])
def test_guarded_workers_on_both_hosts_share_a_journal_through_sshfs(
    bed: Bed, study: str, lock: str
) -> None:
    """O_EXCL on an existing name is EPERM through sshfs (plain Optuna crashes on it): the
    guarded lock confirms by lstat that the name is taken and waits."""
    worker = [PYTHON, "-m", "journal_doctor.demo.worker", "j.log", "--guarded", "--lock", lock,
              "--trials", "25"]  # fmt: skip
    procs = [
        bed.on("hostA", *worker, cwd=str(bed.mnt / study), stderr=subprocess.PIPE),
        bed.on("hostB", *worker, cwd=str(bed.share / study), stderr=subprocess.PIPE),
        bed.on("hostA", *worker, cwd=str(bed.mnt / study), stderr=subprocess.PIPE),
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    check = subprocess.run([PYTHON, "-m", "journal_doctor", "check", "--json",
                            str(bed.share / study / "j.log")],
                           capture_output=True, text=True, check=False)  # fmt: skip
    (health,) = json.loads(check.stdout)["journals"]
    assert health["healthy"], health["summary"]
    assert health["trials_by_state"]["COMPLETE"] == 75
    if lock == "symlink":
        assert not os.path.lexists(bed.share / study / "j.log.lock")


def test_a_plain_lock_on_the_share_stays_unknown_and_says_what_decides(
    bed: Bed, study: str
) -> None:
    proc, holder = hold(bed, study, "plain")
    holder.kill()
    proc.wait()
    document = bed.doctor("hostA", "clean", "--force", str(bed.mnt / study))
    (lock,) = document["locks"]  # type: ignore[misc]
    assert lock["verdict"] == "unknown"
    assert lock["filesystem"] == "fuse.sshfs"
    assert "run journal-doctor on the other hosts" in lock["reason"]
    assert "journal_doctor.storage()" in lock["reason"]
    assert document["removed"] == []
