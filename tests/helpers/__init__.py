"""Test helpers: real Optuna workers in subprocesses, ways to leave their locks behind as crashes
do, and the real CLI in a subprocess. Fixtures live in conftest.py; tests import these."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from journal_doctor.protocol.record import HolderRecord

PYTHON = sys.executable
LOCK_KINDS = ("symlink", "open")


def poll(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.01) -> bool:
    """Wait until `condition()` holds; False on timeout. Tests poll, they do not guess."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def writes_journal(pid: int, journal: Path) -> bool:
    """Does process `pid` have `journal` open for writing right now (fdinfo flags)?"""
    target = journal.stat()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat(f"{fd_dir}/{fd}")
            if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = int(next(line for line in info if line.startswith("flags:")).split()[1], 8)
            if flags & 0o3:
                return True
        except (OSError, StopIteration):
            continue
    return False


def line_count(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


@dataclass
class Workers:
    """Starts real Optuna workers and makes sure none outlives the test."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    python: str = PYTHON  # another venv's python runs another Optuna version
    extra: tuple[str, ...] = ()  # worker options for every start, e.g. ("--guarded",)

    def start(
        self,
        journal: str | Path,
        lock: str = "symlink",
        cwd: str | Path | None = None,
        trials: int = 100000,
        log: Path | None = None,
        grace: int = 30,
        study: str = "doctor-demo",
    ) -> subprocess.Popen[bytes]:
        cmd = [
            self.python,
            "-m",
            "journal_doctor.demo.worker",
            str(journal),
            "--lock",
            lock,
            "--trials",
            str(trials),
            "--grace",
            str(grace),
            "--study",
            study,
        ]
        if log is not None:
            cmd += ["--log", str(log)]
        cmd += self.extra
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def start_busy(
        self, journal: Path, lock: str = "symlink", cwd: Path | None = None, **kw: object
    ) -> subprocess.Popen[bytes]:
        """A worker that has begun writing trials (so a kill can catch it holding the lock)."""
        absolute = journal if cwd is None else Path(cwd) / journal
        before = line_count(absolute)
        proc = self.start(journal, lock, cwd=cwd, **kw)  # type: ignore[arg-type]
        assert poll(lambda: line_count(absolute) > before + 5 or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        return proc

    def kill_holding(
        self, journal: Path, lock: str = "symlink", cwd: Path | None = None, attempts: int = 40
    ) -> int:
        """SIGKILL a busy worker while it holds the lock; loop until a kill leaves the lock.

        Returns the pid of the killed holder.
        """
        absolute = journal if cwd is None else Path(cwd) / journal
        lock_path = Path(str(absolute) + ".lock")
        for _ in range(attempts):
            proc = self.start_busy(journal, lock, cwd=cwd)
            for _ in range(200):
                if os.path.lexists(lock_path):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    break
                time.sleep(0.0005)
            else:
                proc.kill()
                proc.wait()
            if os.path.lexists(lock_path):
                return proc.pid
        raise AssertionError(f"no kill left {lock_path} behind in {attempts} attempts")

    def stop_holding(self, journal: Path, lock: str = "symlink") -> subprocess.Popen[bytes]:
        """SIGSTOP a busy worker at a moment it holds the lock with the journal open to write."""
        lock_path = Path(str(journal) + ".lock")
        proc = self.start_busy(journal, lock)
        for _ in range(5000):
            proc.send_signal(signal.SIGSTOP)
            assert poll(lambda: _state(proc.pid) in ("T", "t"), 5)
            if os.path.lexists(lock_path) and writes_journal(proc.pid, journal):
                return proc
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.001)
        raise AssertionError("never caught the worker holding the lock")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.send_signal(signal.SIGCONT)
                proc.wait()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


@contextlib.contextmanager
def holding_open(path: Path, mode: str = "ab") -> Iterator[subprocess.Popen[bytes]]:
    """A live process with `path` open ("ab": like a lock holder mid-write; "rb": a reader)."""
    proc = subprocess.Popen(
        [PYTHON, "-c", f"import sys,time; f=open(sys.argv[1],{mode!r}); print(1, flush=True);"
         " time.sleep(600)", str(path)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"1"  # the file is open now
        yield proc
    finally:
        proc.kill()
        proc.wait()


def run_doctor(
    *args: str, cwd: Path | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (no TTY on stdin unless a test makes one)."""
    return subprocess.run(
        [PYTHON, "-m", "journal_doctor", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process, where a process is not the point (parsing, output, exit codes,
    refusals): no terminal on stdin, stdout or stderr. `run_doctor` where it is (a doctor
    whose holders, signals or terminal are the test)."""
    from journal_doctor.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        stdin, sys.stdin = sys.stdin, io.StringIO("")
        try:
            main(list(args))
        except SystemExit as done:
            code = done.code
        finally:
            sys.stdin = stdin
    returncode = code if isinstance(code, int) else 0
    return subprocess.CompletedProcess(["journal-doctor", *args], returncode, out.getvalue(),
                                       err.getvalue())  # fmt: skip


def doctor_json(*args: str, cwd: Path | None = None) -> tuple[int, dict[str, object]]:
    result = run_doctor(*args, "--json", cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def age_path(path: Path, seconds: float) -> None:
    """Make a lock look `seconds` old (lstat mtime), without following a symlink."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def guarded_symlink_lock(journal: Path, record: HolderRecord) -> Path:
    """A symlink lock as a guarded holder described by `record` leaves it: its record in the
    journal's heartbeats directory, named by the token the link's target carries."""
    from journal_doctor.guard.heartbeat import write_record
    from journal_doctor.protocol.record import holder_path, link_target

    lock = Path(f"{journal}.lock")
    os.symlink(link_target(journal.name, record.token), lock)
    write_record(holder_path(str(journal), record.token), record)
    return lock


def require(feature: str, reason: str) -> None:
    """Skip a test that cannot run here, unless JD_REQUIRE names `feature` (CI sets it for
    everything its machine provides): then the skip is a failure, so CI cannot go green on a
    test it never ran."""
    import pytest

    required = {f.strip() for f in os.environ.get("JD_REQUIRE", "").split(",") if f.strip()}
    if feature in required or "all" in required:
        pytest.fail(f"required feature {feature!r} is missing: {reason}")
    pytest.skip(reason)


def need_root(feature: str = "root") -> None:
    if os.geteuid() != 0:
        require(feature, "needs root")


def nobody_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run the real CLI as the unprivileged user `nobody` (who
    cannot read root's editable install: the source goes on PYTHONPATH)."""
    import pwd
    import shutil

    need_root("nobody")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        require("nobody", "setpriv (util-linux) is not installed")
    nobody = pwd.getpwnam("nobody")
    argv = [setpriv or "setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
            "--clear-groups", PYTHON, "-m", "journal_doctor", *args]  # fmt: skip
    return argv, {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent.parent)}


def as_nobody(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI run as the unprivileged user `nobody` (root sees every file)."""
    argv, env = nobody_command(*args)
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd,
                          timeout=120, env=env)  # fmt: skip


def in_container(*args: str, setup: str = "") -> subprocess.CompletedProcess[str]:
    """The real CLI in a child pid namespace with its own /proc (as Docker or Kubernetes run
    it): `unshare --pid --fork --mount-proc`. `setup` runs first in that mount namespace."""
    import shlex
    import shutil

    need_root("unshare")
    if shutil.which("unshare") is None:
        require("unshare", "unshare (util-linux) is not installed")
    command = shlex.join([PYTHON, "-m", "journal_doctor", *args])
    return subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", f"{setup}\nexec {command}"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def with_private_mounts(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a private mount namespace after `script` (mounts seen by it alone)."""
    import shlex

    need_root("unshare")
    command = shlex.join([PYTHON, "-m", "journal_doctor", *args])
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"set -e\n{script}\nexec {command}"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


@dataclass
class Screen:
    output: str
    returncode: int


def _terminal_session() -> None:
    """In the child: the pty becomes its controlling terminal (so a typed Ctrl-C is a SIGINT
    from the terminal), and SIGINT has its default action: a shell starts background jobs with
    it ignored, and Python keeps an ignored SIGINT ignored."""
    import fcntl
    import termios

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def in_terminal(
    *args: str,
    columns: int = 80,
    keys: bytes | None = None,
    prompt: str = "[y/N]",
    cwd: Path | None = None,
) -> Screen:
    """The real CLI on a real pseudo-terminal of `columns` columns. With `keys`, they are typed
    once `prompt` shows (b"n\\r" declines, b"\\x03" is Ctrl-C)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [PYTHON, "-m", "journal_doctor", *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
        env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
        start_new_session=True,
        # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored
        # SIGINT ignored: give the child the terminal's default, as a user's shell does.
        preexec_fn=_terminal_session,
    )  # fmt: skip
    os.close(slave)
    # Ctrl-C must reach the process as a terminal's SIGINT: make the pty its controlling tty.
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            output += data
            if keys is not None and prompt.encode() in output:
                os.write(master, keys)  # b"\x03": the terminal sends SIGINT, as a user's does
                keys = None
        elif proc.poll() is not None:
            break
    # A session leader that closed its end may still be leaving the kernel; it has been seen
    # there for over 30 s while nothing read the master: go on reading until it is gone.
    gone = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < gone:
        if select.select([master], [], [], 0.1)[0]:
            with contextlib.suppress(OSError):
                output += os.read(master, 65536)
    proc.wait(timeout=1)
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))  # colours
    return Screen(text.replace("\r\n", "\n"), proc.returncode)


def running_trials(journal: Path) -> int:
    from journal_doctor.journal.check import check_journal

    if not journal.exists():
        return 0
    return check_journal(str(journal)).trials_by_state["RUNNING"]


def kill_mid_trial(journal: Path, workers: Workers, lock: str = "symlink") -> None:
    """SIGKILL workers holding the lock until one dies with a trial RUNNING (a kill can also
    land on the write that completes a trial), then clean the lock it left."""
    for _ in range(20):
        before = running_trials(journal)
        workers.kill_holding(journal, lock)
        age_path(Path(f"{journal}.lock"), 10)
        assert doctor_json("clean", "--force", str(journal.parent))[0] == 0
        if running_trials(journal) > before:
            return
    raise AssertionError("no kill left a RUNNING trial in 20 attempts")


def kill_guarded_mid_trial(journal: Path, sleepy: Workers) -> None:
    """SIGKILL sleepy guarded workers until one dies with a trial RUNNING: a kill can land
    between one trial's completion and the next one's creation, leaving nothing to fail."""
    for _ in range(20):
        before = running_trials(journal)
        victim = start_running(journal, sleepy, before)
        victim.kill()
        victim.wait()
        if running_trials(journal) > before:
            return
    raise AssertionError("no kill left a RUNNING trial in 20 attempts")


def start_running(journal: Path, sleepy: Workers, before: int) -> subprocess.Popen[bytes]:
    """A sleepy guarded worker, once a trial of its own is RUNNING."""
    victim = sleepy.start(journal, trials=100)
    poll(lambda: running_trials(journal) > before or victim.poll() is not None, 60)
    assert victim.poll() is None, victim.stderr.read().decode() if victim.stderr else ""
    return victim
