"""A randomized fault soak on the NFS bed, with an auditor; `tests/test_nfs.py` runs a short one
and a person runs a long one before a release:

    sudo python tests/nfs/soak.py --vers 4.2 --seconds 3600 [--seed N]   # from the checkout

Two client hosts run guarded workers (`journal_doctor.storage()`) on one shared journal, beside
plain Optuna workers and Rustuna workers on journals of their own (the baseline). Faults are
drawn at random from a recorded seed, one at a time: a host killed and booted again, a worker
frozen past the grace period, a host's link cut for longer than the lease, the server killed
and booted again, a host's clock stepped by minutes, the export filled up. Meanwhile the host
that is not faulted scans the shared directory. When the time is up the faults stop, the fleet
settles, every worker is asked to stop, and the auditor compares each journal with what each of
its workers was told ("ack N VALUE": a trial's COMPLETE written): every acknowledged op there
exactly once, no garbled line, the study loads, every trial COMPLETE or FAIL-and-retried, no
LockLost on a host that had no fault, no scan that called a live holder's lock orphaned. A
failing seed runs the same faults again (`--seed`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))  # run as a script: tests/ on the path

from nfs.bed import BED, EXPORT, LEASE, MNT, Bed, Remote
from nfs.worker import audit_journal

GRACE = 4.0  # the guarded workers' grace period (the default is 10 s)
MODES = ("guarded", "plain", "rustuna")
CLIENTS = ("nfsA", "nfsB")
FAULTS = ("host-death", "freeze", "partition", "server-restart", "clock-step", "export-full")


@dataclass
class Fault:
    kind: str
    target: str  # a host, or a worker "host/mode"
    start: float
    end: float = 0.0
    detail: str = ""


@dataclass
class Worker:
    host: str
    mode: str
    proc: Remote
    pid: str = ""
    acks: list[tuple[int, str, float]] = field(default_factory=list)
    stderr: str = ""
    lines: list[str] = field(default_factory=list)

    def drain(self) -> None:
        while True:
            try:
                line = self.proc.events.get_nowait()
            except queue.Empty:
                return
            if line is None:
                return
            self.lines.append(line)
            words = line.split()
            if words[:1] == ["ack"]:
                self.acks.append((int(words[1]), words[2], float(words[3])))
            elif words[:1] == ["started"]:
                self.pid = words[1]


@dataclass
class Soak:
    bed: Bed
    seed: int
    seconds: float
    out: Path
    rng: random.Random = field(init=False)
    workers: list[Worker] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    scans: list[dict[str, Any]] = field(default_factory=list)
    directory: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.directory = f"{MNT}/soak-{uuid.uuid4().hex[:8]}"
        self.stop_file = self.out / "stop"

    def journal(self, mode: str) -> str:
        return f"{self.directory}/{mode}.log"

    # --- the fleet ---------------------------------------------------------------------------

    def start(self, host: str) -> None:
        for mode in MODES:
            kind = "open" if mode == "plain" else "symlink"
            proc = self.bed.on(host, "soak", self.journal(mode), kind, str(GRACE), mode,
                               str(self.stop_file), "0.05")  # fmt: skip
            self.workers.append(Worker(host=host, mode=mode, proc=proc))

    def drain(self) -> None:
        for worker in self.workers:
            worker.drain()

    def living(self, host: str, mode: str | None = None) -> list[Worker]:
        return [w for w in self.workers if w.host == host and w.proc.poll() is None
                and (mode is None or w.mode == mode)]  # fmt: skip

    # --- faults --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.begin()
        scanner = threading.Thread(target=self._scan_loop, daemon=True)
        scanner.start()
        ends = time.monotonic() + self.seconds
        try:
            while time.monotonic() < ends:
                self._pause(self.rng.uniform(2, 6))
                self.inject(self.rng.choice(FAULTS))
        finally:
            self.stopping.set()
            scanner.join(timeout=60)
            self.heal_all()
        return self.finish()

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.drain()
            time.sleep(0.2)

    def inject(self, kind: str) -> None:
        host = self.rng.choice(CLIENTS)
        fault = Fault(kind=kind, target=host, start=time.time())
        self.faults.append(fault)
        getattr(self, "_" + kind.replace("-", "_"))(fault, host)
        fault.end = time.time()
        print(f"soak: {fault.kind} {fault.target} {fault.detail} {fault.end - fault.start:.1f}s",
              flush=True)  # fmt: skip

    def _host_death(self, fault: Fault, host: str) -> None:
        self.bed.kill(host)
        self._pause(self.rng.uniform(3, 10))
        self.bed.boot(host)
        self.drain()
        self.start(host)

    def _freeze(self, fault: Fault, host: str) -> None:
        candidates = [w for w in self.living(host) if w.pid and w.mode != "rustuna"]
        if not candidates:
            fault.detail = "nothing to freeze"
            return
        worker = self.rng.choice(candidates)
        fault.target = f"{host}/{worker.mode}"
        self.bed.run(host, f"kill -STOP {worker.pid}")
        self._pause(GRACE + self.rng.uniform(1, 6))
        self.bed.run(host, f"kill -CONT {worker.pid}")

    def _partition(self, fault: Fault, host: str) -> None:
        self.bed.link(host, up=False)
        try:
            self._pause(LEASE + self.rng.uniform(2, 10))
        finally:
            self.bed.link(host, up=True)

    def _server_restart(self, fault: Fault, host: str) -> None:
        fault.target = "nfsS"
        self.restart_server(self.rng.uniform(2, 8))

    def restart_server(self, downtime: float) -> float:
        """The server killed, and booted again `downtime` seconds later; when it is back."""
        self.bed.kill("nfsS")
        self._pause(downtime)
        self.bed.boot("nfsS")
        return time.time()

    def begin(self) -> None:
        """The fleet on both hosts, each worker past its first acknowledged trial."""
        self.bed.run("nfsA", f"mkdir -p {self.directory}")
        for host in CLIENTS:
            self.start(host)
        deadline = time.monotonic() + 180
        while not all(w.acks for w in self.workers) and time.monotonic() < deadline:
            self._pause(0.5)

    def next_ack_after(self, worker: Worker, since: float, timeout: float) -> float | None:
        """Seconds from `since` to the worker's first acknowledged trial after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            later = [at for _, _, at in worker.acks if at > since]
            if later:
                return min(later) - since
            if worker.proc.poll() is not None:
                return None  # it died: its stderr, at the end, says why
            time.sleep(0.2)
        return None

    def _clock_step(self, fault: Fault, host: str) -> None:
        minutes = self.rng.choice((-1, 1)) * self.rng.randint(1, 5)
        fault.detail = f"{minutes:+d} min"
        self.bed.run(host, f"date -s '{minutes:+d} min' >/dev/null")
        try:
            self._pause(self.rng.uniform(5, 15))
        finally:
            self.bed.run(host, f"date -s '{-minutes:+d} min' >/dev/null")

    def _export_full(self, fault: Fault, host: str) -> None:
        fault.target = "nfsS"
        self.bed.run("nfsS", f"fallocate -l $(( $(df -B1 --output=avail {EXPORT} | tail -1)"
                             f" - 65536 )) {EXPORT}/filler")  # fmt: skip
        try:
            self._pause(self.rng.uniform(3, 10))
        finally:
            self.bed.run("nfsS", f"rm -f {EXPORT}/filler")

    def heal_all(self) -> None:
        for host in ("nfsS", *CLIENTS):
            with contextlib.suppress(Exception):
                if not Path(f"/proc/{self.bed.init(host)}").exists():
                    self.bed.boot(host)
                    if host != "nfsS":
                        self.start(host)
            if host != "nfsS":
                self.bed.link(host, up=True)
        with contextlib.suppress(Exception):
            self.bed.run("nfsS", f"rm -f {EXPORT}/filler")

    # --- scans during the faults ---------------------------------------------------------------

    def _scan_loop(self) -> None:
        while not self.stopping.wait(self.rng.uniform(2, 4)):
            faulted = {f.target.split("/")[0] for f in self.faults if not f.end}
            hosts = [h for h in CLIENTS if h not in faulted]
            if not hosts:
                continue
            with contextlib.suppress(Exception):
                at = time.time()
                found = self.bed.doctor(hosts[0], "scan", "--shared", self.directory)
                self.scans.append({"host": hosts[0], "at": at, "until": time.time(),
                                   "locks": found.get("locks", [])})  # fmt: skip

    # --- the end, and the audit ----------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        self._pause(GRACE + LEASE + 10)  # the fleet settles: stale trials failed and retried
        self.stop_file.touch()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(w.proc.poll() is None for w in self.workers):
            self._pause(1)
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.lines.append("hung: killed at the end")
                worker.proc.kill()
            worker.drain()
            with contextlib.suppress(Exception):
                worker.stderr = worker.proc.stderr.read() if worker.proc.stderr else ""
        return self.audit()

    def audit(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "seed": self.seed, "vers": self.bed.vers, "seconds": self.seconds,
            "faults": dict(Counter(f.kind for f in self.faults)),
            "journals": {mode: self._audit_journal(mode) for mode in MODES},
            "live_locks_broken": self._live_locks_broken(),
            "scans": len(self.scans),
            "wrong_scans": self._wrong_scans(),
        }  # fmt: skip
        (self.out / "soak.json").write_text(json.dumps(report, indent=1))
        logged = [
            f"{f.start:.3f} {f.end:.3f} {f.kind} {f.target} {f.detail}\n" for f in self.faults
        ]
        (self.out / "faults.log").write_text("\n".join(logged) + "\n")
        for number, worker in enumerate(self.workers):
            name = f"{number:02d}-{worker.host}-{worker.mode}-{worker.pid or 'x'}"
            (self.out / f"{name}.out").write_text("\n".join(worker.lines) + "\n")
            (self.out / f"{name}.err").write_text(worker.stderr)
        return report

    def _audit_journal(self, mode: str) -> dict[str, Any]:
        acks = [ack for w in self.workers if w.mode == mode for ack in w.acks]
        seen = self._read_on_server(self.journal(mode))
        trials = {t["number"]: t for t in seen.get("trials", [])}
        lost = [n for n, value, _ in acks
                if n not in trials or trials[n]["state"] != "COMPLETE"
                or repr(trials[n]["value"]) != value]  # fmt: skip
        twice = [n for n, _, _ in acks if seen.get("completes", {}).get(str(n), 0) > 1]
        failed = {n for n, t in trials.items() if t["state"] == "FAIL"}
        retried = {t["retry_of"] for t in trials.values() if t["retry_of"] is not None}
        return {
            "acked": len(acks), "lost": len(lost), "lost_numbers": lost[:20],
            "twice": len(twice), "healthy": seen.get("healthy"), "loads": seen.get("loads"),
            "error": seen.get("error"), "summary": seen.get("summary"),
            "running": sorted(n for n, t in trials.items() if t["state"] == "RUNNING"),
            "failed_not_retried": sorted(failed - retried),
            "hung": sum("hung" in " ".join(w.lines) for w in self.workers if w.mode == mode),
        }  # fmt: skip

    def _read_on_server(self, journal: str) -> dict[str, Any]:
        """The journal as the server's own disk has it, copied here and audited
        (`worker.audit_journal`): Optuna's import alone takes a minute in the server's guest."""
        encoded = self.bed.run("nfsS", f"base64 -w0 {journal.replace(MNT, EXPORT)}", 300)
        copy = self.out / Path(journal).name
        copy.write_bytes(base64.b64decode(encoded))
        return audit_journal(str(copy), "soak")

    def _faulted(self, host: str, at: float, before: float) -> bool:
        """Did `host` (or a worker on it, or the server) have a fault in [at - before, at]?"""
        return any(
            (f.target.split("/")[0] in (host, "nfsS")) and f.start - 1 <= at
            and (f.end or at) >= at - before
            for f in self.faults
        )  # fmt: skip

    def _live_locks_broken(self) -> list[str]:
        """LockLost said by a guarded worker whose host had no fault in its life: a live
        holder's lock broken."""
        found = []
        for worker in self.workers:
            if worker.mode != "guarded" or "LockLost" not in worker.stderr:
                continue
            if not any(f.target.split("/")[0] in (worker.host, "nfsS") for f in self.faults):
                found.append(f"{worker.host}/{worker.pid}")
        return found

    def _wrong_scans(self) -> list[str]:
        """A scan that called a guarded lock orphaned while its holder's host had no fault in
        the grace period and lease before: a live holder's lock judged orphaned."""
        wrong = []
        for scan in self.scans:
            for lock in scan["locks"]:
                record = lock.get("record") or {}
                holder_host = str(record.get("host", ""))
                if lock.get("verdict") != "orphaned" or holder_host not in CLIENTS:
                    continue
                if not self._faulted(holder_host, scan["at"], GRACE + LEASE + 30):
                    wrong.append(f"{scan['at']:.1f} {lock.get('path')} held by {holder_host}")
        return wrong


def problems(report: dict[str, Any]) -> list[str]:
    """What the guarded fleet must never do; the baseline's figures are reported, not judged."""
    guarded = report["journals"]["guarded"]
    found = []
    for key in ("lost", "twice"):
        if guarded[key]:
            found.append(f"guarded: {guarded[key]} acknowledged op(s) {key}")
    if not guarded["healthy"] or not guarded["loads"]:
        found.append(f"guarded: journal {guarded['summary']} {guarded['error'] or ''}")
    if guarded["running"]:
        found.append(f"guarded: trials left RUNNING {guarded['running']}")
    if guarded["failed_not_retried"]:
        found.append(f"guarded: FAIL trials never retried {guarded['failed_not_retried']}")
    if guarded["hung"]:
        found.append(f"guarded: {guarded['hung']} worker(s) did not stop when asked")
    if report["live_locks_broken"]:
        found.append(f"live locks broken: {report['live_locks_broken']}")
    if report["wrong_scans"]:
        found.append(f"scans that called a live lock orphaned: {report['wrong_scans'][:5]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vers", default="4.2", help="NFS version of the clients' mounts")
    parser.add_argument("--seconds", type=float, default=600, help="how long faults are drawn")
    parser.add_argument("--seed", type=int, default=None, help="replay a seed's faults")
    parser.add_argument("--out", default=None, help="where the report and logs go")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    out = Path(args.out or tempfile.mkdtemp(prefix="jd-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    bed = Bed(args.vers, out / "bed")
    subprocess.run([str(BED / "teardown.sh")], env=bed.env(), capture_output=True)
    bed.script("setup.sh", timeout=300)
    try:
        report = Soak(bed, seed, args.seconds, out).run()
    finally:
        bed.stop_all()
        subprocess.run([str(BED / "teardown.sh")], env={**bed.env(), "NB_WIPE": "1"},
                       capture_output=True, timeout=60)  # fmt: skip
    print(json.dumps(report, indent=1))
    found = problems(report)
    print("\n".join(found) or f"soak: seed {seed}: no problem found", flush=True)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
