"""Drive the NFS bed (this folder's scripts) from Python: the tests and the benchmarks use it.

`Bed(vers, state)` names one bed; `setup.sh`/`teardown.sh` start and stop it. `on()` runs a
`worker.py` scenario on a guest and reads its lines in a thread, so that waiting for one has a
deadline; `run()` runs a shell command there; `kill()` is a host's death, `link()` cuts or heals
its network.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers import poll

BED = Path(__file__).parent
WORKER = BED / "worker.py"
PYTHON = sys.executable
DOCTOR = str(Path(sys.executable).with_name("journal-doctor"))
LEASE = 15  # the server's NFSv4 lease here (nfsd's default is 90 s)
MNT = "/mnt/nfs"
EXPORT = "/srv/nfsbed"


class Remote(subprocess.Popen[str]):
    """A process on a guest; a thread reads its lines, so that waiting for one has a deadline."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.events: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.stdout is not None
        for line in self.stdout:
            self.events.put(line.strip())
        self.events.put(None)


@dataclass
class Bed:
    vers: str
    state: Path
    started: list[Remote] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "NB_STATE": str(self.state), "NB_VERS": self.vers,
                "NB_LEASE": str(LEASE)}  # fmt: skip

    def script(self, name: str, *args: str, timeout: float = 180) -> str:
        done = subprocess.run([str(BED / name), *args], env=self.env(), capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        return done.stdout

    def ssh(self, host: str, command: str) -> list[str]:
        address = {"nfsS": "10.201.0.2", "nfsA": "10.201.0.11", "nfsB": "10.201.0.12"}[host]
        return ["ip", "netns", "exec", "nfsS", "ssh", "-F", str(self.state / "ssh_config"),
                f"root@{address}", "--", command]  # fmt: skip

    def on(self, host: str, *args: str) -> Remote:
        """A scenario of worker.py on that host, its output a line per event."""
        proc = Remote(self.ssh(host, " ".join([PYTHON, str(WORKER), *args])))
        self.started.append(proc)
        return proc

    def run(self, host: str, command: str, timeout: float = 120) -> str:
        done = subprocess.run(self.ssh(host, command), capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        assert done.returncode == 0, f"{host}: {command}: {done.stdout}{done.stderr}"
        return done.stdout

    def doctor(self, host: str, *args: str) -> dict[str, object]:
        out = self.run(host, " ".join([DOCTOR, *args, "--json"]) + " || true")
        return json.loads(out)  # type: ignore[no-any-return]

    def init(self, host: str) -> int:
        return int((self.state / "run" / f"init.{host}").read_text())

    def kill(self, host: str) -> None:
        """The host dies: its kernel, and every process on it, at once."""
        os.kill(self.init(host), 9)
        assert poll(lambda: not Path(f"/proc/{self.init(host)}").exists(), 10)

    @contextlib.contextmanager
    def without_delegations(self) -> Iterator[None]:
        """The server grants no NFSv4 delegations meanwhile: nfsd grants them through the VFS's
        file leases, which `fs.leases-enable=0` turns off (for new opens, at once)."""
        self.run("nfsS", "echo 0 > /proc/sys/fs/leases-enable")
        try:
            yield
        finally:
            self.run("nfsS", "echo 1 > /proc/sys/fs/leases-enable")

    def boot(self, host: str) -> None:
        self.script("host_up.sh", host)

    def link(self, host: str, up: bool) -> None:
        veth = "veth" + host[-1]
        subprocess.run(["ip", "-n", host, "link", "set", veth, "up" if up else "down"],
                       check=True)  # fmt: skip

    def stop_all(self) -> None:
        for proc in self.started:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.started.clear()


def lines(proc: Remote, want: str, timeout: float = 60) -> list[str]:
    """The process's lines up to and including the first that starts with `want`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = proc.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {want!r} within {timeout}s: {seen}") from None
        if line is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"ended before {want!r}: {seen} {err[-3000:]}")
        seen.append(line)
        if line.startswith(want):
            return seen


def tell(proc: Remote, text: str = "go") -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()
