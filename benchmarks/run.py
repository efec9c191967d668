"""journal-doctor benchmarks: each figure beside a baseline measured in the same run.

    python benchmarks/run.py            # everything, about 4 minutes (1 GB journal)
    python benchmarks/run.py --quick    # a 100 MB journal and fewer repeats, about 1.5 minutes
    python benchmarks/run.py --only nfs # appends on the kernel NFS bed (root; tests/nfs/install.sh)

The machines are shared and noisy, so the results are ratios against baselines taken in the same
run, each a median over repeated runs. Builds all its data in a temporary directory and removes
it afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from journal_data import write_journal

PYTHON = sys.executable
DOCTOR = [PYTHON, "-m", "journal_doctor"]
_script = Path(PYTHON).with_name("journal-doctor")
if _script.exists():
    DOCTOR = [str(_script)]  # what users run: the console script


@dataclass
class Row:
    name: str
    ours: str
    baseline: str
    ratio: float | None
    target: str
    holds: bool | None


ROWS: list[Row] = []


def say(message: str) -> None:
    print(f"  ... {message}", file=sys.stderr, flush=True)


def timed_together(cmds: Sequence[Sequence[str]], repeats: int) -> list[float]:
    """The median time of each command, run in turn within each repeat: a slow spell of the
    shared machine then falls on both sides of a ratio instead of on one."""
    samples: list[list[float]] = [[] for _ in cmds]
    for _ in range(repeats):
        for cmd, times in zip(cmds, samples, strict=True):
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in samples]


def timed(cmd: Sequence[str], repeats: int) -> float:
    return timed_together([cmd], repeats)[0]


def timed_call(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run_with_rss(cmd: Sequence[str]) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss * 1024


# 1. Tree scan -----------------------------------------------------------------------------


def build_tree(
    root: Path, studies: int = 2000, entries_per_study: int = 100, locks_every: int = 1
) -> int:
    """`studies` study directories of `entries_per_study` entries: a journal, its lock (both
    kinds; every 10th symlink dangling), every 20th a `.rename` leftover, checkpoints. With
    `locks_every` = n only every n-th study has a lock (and leftover)."""
    count = 0
    for i in range(studies):
        if i % locks_every:
            study = root / f"group{i // 50:03d}" / f"study{i:04d}"
            study.mkdir(parents=True)
            for k in range(entries_per_study):
                os.close(os.open(study / f"ckpt_{k:03d}.pt", os.O_CREAT | os.O_WRONLY))
            count += entries_per_study
            continue
        study = root / f"group{i // 50:03d}" / f"study{i:04d}"
        study.mkdir(parents=True)
        journal = study / "journal.log"
        journal.write_bytes(b'{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\n')
        if i % 2:
            os.close(os.open(f"{journal}.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        elif i % 10 == 0:
            os.symlink("runs/journal.log", f"{journal}.lock")  # dangles
        else:
            os.symlink(str(journal), f"{journal}.lock")
        made = 2
        if i % 20 == 0:
            Path(f"{journal}.lock{uuid.uuid4()}.rename").touch()
            made += 1
        for k in range(entries_per_study - made):
            os.close(os.open(study / f"ckpt_{k:03d}.pt", os.O_CREAT | os.O_WRONLY))
        count += entries_per_study
    return count


def bench_tree_scan(work: Path, repeats: int) -> list[Path]:
    empty = work / "empty"
    empty.mkdir()
    for name, locks_every in (("tree", 1), ("sparse", 100)):
        tree = work / name
        tree.mkdir()
        say(f"building a 200k-entry tree with a lock in every {locks_every} study dirs")
        entries = build_tree(tree, locks_every=locks_every)
        locks = 2000 // locks_every
        # Per entry: the tree's time less the empty directory's (start-up), for both sides.
        scan_tree, scan_empty, find_tree, find_empty = timed_together(
            [[*DOCTOR, "scan", "--json", str(tree)], [*DOCTOR, "scan", "--json", str(empty)],
             ["find", str(tree), "-name", "*.lock*"], ["find", str(empty), "-name", "*.lock*"]],
            repeats * 2 + 1)  # fmt: skip
        ours = (scan_tree - scan_empty) / entries * 1e6
        base = (find_tree - find_empty) / entries * 1e6
        ratio = ours / base
        ROWS.append(
            Row(
                f"tree scan, per entry ({entries:,} entries, {locks:,} locks)",
                f"{ours:.2f} us ({scan_tree:.2f} s)",
                f"find -name '*.lock*': {base:.2f} us ({find_tree:.2f} s)",
                ratio,
                "<= 1.5x",
                ratio <= 1.5,
            )
        )
    shutil.rmtree(work / "sparse")
    return sorted((work / "tree").rglob("journal.log"))


# 2. Start-up ------------------------------------------------------------------------------


def compile_bytecode() -> None:
    """Write journal_doctor's .pyc files, as installing a wheel does.

    With PYTHONDONTWRITEBYTECODE set (it is on these machines) an editable checkout runs every
    module it changed from source, compiling each at every start; the baseline's packages have
    their bytecode from their install. Without this the start-up row measured the compiler.
    """
    import journal_doctor

    package = Path(journal_doctor.__file__).parent
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(package)], check=True)


def bench_startup(work: Path, repeats: int) -> None:
    empty = work / "empty"
    scan_empty = [*DOCTOR, "scan", "--json", str(empty)]
    ours, base = timed_together([scan_empty, [PYTHON, "-c", "import typer, rich, psutil"]], repeats)
    importtime = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "journal_doctor", "scan", "--json", str(empty)],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    optuna_loaded = any(line.rstrip().endswith(" optuna") for line in importtime.splitlines())
    ratio = ours / base
    ROWS.append(
        Row(
            "start-up: scan --json EMPTY",
            f"{ours * 1000:.0f} ms",
            f"python -c 'import typer, rich, psutil': {base * 1000:.0f} ms",
            ratio,
            "<= 1.3x",
            ratio <= 1.3,
        )
    )
    ROWS.append(
        Row(
            "start-up: optuna imported by scan (-X importtime)",
            "yes" if optuna_loaded else "no",
            "-",
            None,
            "no",
            not optuna_loaded,
        )
    )


# 3. Holder lookup -------------------------------------------------------------------------


def bench_holders(journals: list[Path], repeats: int) -> None:
    from journal_doctor.locks.holders import survey_holders

    def keyed(paths: list[Path]) -> dict[tuple[int, int], str]:
        out = {}
        for path in paths:
            st = path.stat()
            out[(st.st_dev, st.st_ino)] = str(path)
        return out

    one, many = keyed(journals[:1]), keyed(journals)
    uids = {os.geteuid()}
    # A live holder of one journal and a reader of another, so there is something to find.
    holder = subprocess.Popen(
        [PYTHON, "-c", "import sys,time; a=open(sys.argv[1],'ab'); b=open(sys.argv[2],'rb');"
         " print(1, flush=True); time.sleep(600)", str(journals[0]), str(journals[-1])],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        holder.stdout.readline()
        t_one = timed_call(lambda: survey_holders(one, uids), repeats * 4)
        t_many = timed_call(lambda: survey_holders(many, uids), repeats * 4)
        found = survey_holders(many, uids)
        examined = found.processes_examined
        fuser = shutil.which("fuser")
        lsof = shutil.which("lsof")
        t_fuser = timed([fuser, *map(str, journals)], repeats) if fuser else float("nan")
        t_lsof = timed([lsof, "--", str(journals[0])], repeats) if lsof else float("nan")
    finally:
        holder.kill()
        holder.wait()
    ratio = t_many / t_one
    ROWS.append(
        Row(
            f"holder lookup, 2,000 locks vs 1 ({examined} processes examined)",
            f"{t_many * 1000:.1f} ms vs {t_one * 1000:.1f} ms",
            f"fuser on 2,000 journals: {t_fuser * 1000:.0f} ms; lsof on 1 file:"
            f" {t_lsof * 1000:.0f} ms",
            ratio,
            "<= 1.2x",
            ratio <= 1.2,
        )
    )
    ROWS.append(
        Row(
            "holder lookup vs one fuser pass over the same 2,000 journals",
            f"{t_many * 1000:.1f} ms",
            f"fuser: {t_fuser * 1000:.0f} ms",
            t_many / t_fuser,
            "(context)",
            None,
        )
    )


# 4. check ---------------------------------------------------------------------------------


def bench_check(work: Path, size: int, repeats: int) -> None:
    journal = work / "big.log"
    say(f"writing a {size / 1e9:.1f} GB journal from a real study's ops")
    lines = write_journal(str(journal), size)
    real_size = journal.stat().st_size
    samples = [run_with_rss([*DOCTOR, "check", str(journal)]) for _ in range(repeats)]
    seconds = statistics.median(s for s, _ in samples)
    rss = max(r for _, r in samples)
    say("loading it with Optuna (JournalStorage(JournalFileBackend(path)))")
    load = (
        "import sys, time; from optuna.storages.journal import JournalFileBackend, JournalStorage;"
        "JournalStorage(JournalFileBackend(sys.argv[1]))"
    )
    optuna_seconds, optuna_rss = run_with_rss([PYTHON, "-c", load, str(journal)])
    mb = real_size / 1e6
    ROWS.append(
        Row(
            f"check, {mb:,.0f} MB journal ({lines:,} lines)",
            f"{seconds:.1f} s = {mb / seconds:.0f} MB/s",
            f"Optuna's load: {optuna_seconds:.1f} s = {mb / optuna_seconds:.0f} MB/s",
            optuna_seconds / seconds,
            ">= 10x faster",
            optuna_seconds / seconds >= 10,
        )
    )
    ROWS.append(
        Row(
            "check, peak RSS",
            f"{rss / 2**20:.0f} MB",
            f"Optuna's load: {optuna_rss / 2**20:,.0f} MB",
            None,
            "<= 100 MB",
            rss <= 100 * 2**20,
        )
    )
    journal.unlink()


# 5. Resume after a crash ------------------------------------------------------------------


def bench_resume(work: Path) -> None:
    from journal_doctor.demo import _crash_holding_lock

    procs: list[subprocess.Popen[bytes]] = []
    try:
        results = {}
        for mode in ("optuna", "doctor"):
            journal = str(work / f"resume-{mode}.log")
            _crash_holding_lock(journal, procs)
            start = time.perf_counter()
            if mode == "doctor":
                subprocess.run(
                    [*DOCTOR, "clean", "--force", "--wait", "30", "--min-age", "1", str(work)],
                    stdout=subprocess.DEVNULL,
                    check=False,
                )
            subprocess.run(
                [PYTHON, "-m", "journal_doctor.demo.worker", journal, "--trials", "3"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # Optuna's own grace-period warnings
                check=True,
            )
            results[mode] = time.perf_counter() - start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    ROWS.append(
        Row(
            "resume after a SIGKILL holding the lock, to 3 trials done",
            f"clean --force --wait 30 --min-age 1, then resume: {results['doctor']:.1f} s",
            f"Optuna alone (grace period): {results['optuna']:.1f} s",
            results["optuna"] / results["doctor"],
            "(faster)",
            results["doctor"] < results["optuna"],
        )
    )


# 6. The guarded storage ---------------------------------------------------------------------

APPEND = """
import sys, time
from journal_doctor.journal.optuna_api import file_backend_class, optuna_lock
from journal_doctor.guard.storage import GuardedBackend, OptunaGuardedLock
from journal_doctor.model import LockKind
journal, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "guarded":
    backend = GuardedBackend(journal, lock_obj=OptunaGuardedLock(journal, LockKind.SYMLINK))
else:
    backend = file_backend_class()(journal, lock_obj=optuna_lock(journal, LockKind.SYMLINK))
op = {"op_code": 2, "worker_id": "bench", "study_id": 0, "user_attr": {"k": "v" * 40}}
print(time.perf_counter(), flush=True)
backend.append_logs([op])  # the first: a guarded process also writes its record then
print(time.perf_counter(), flush=True)
for _ in range(count):
    backend.append_logs([op])
print(time.perf_counter(), flush=True)
"""


def append_spans(outputs: list[str], count: int) -> tuple[float, float]:
    """(appends per second after each process's first append, the slowest first append in
    seconds) from APPEND's three timestamps per process: the first append of a process is a
    start-up cost (a guarded one writes its record then), the rest is the throughput."""
    stamps = [tuple(map(float, out.split())) for out in outputs]
    elapsed = max(end for _, _, end in stamps) - min(first for _, first, _ in stamps)
    return len(stamps) * count / elapsed, max(first - start for start, first, _ in stamps)


def _appends_per_second(work: Path, mode: str, workers: int, count: int) -> float:
    journal = work / f"append-{mode}-{workers}.log"
    journal.unlink(missing_ok=True)
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", APPEND, str(journal), mode, str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    return append_spans([proc.communicate()[0] for proc in procs], count)[0]


HOLD = """
import os, sys, time
from journal_doctor.guard.lock import GuardedLock
lock = GuardedLock(sys.argv[1])
lock.acquire()
# process_time: every thread's CPU, to the nanosecond (os.times() counts 10 ms ticks).
before = time.process_time()
time.sleep(float(sys.argv[2]))
after = time.process_time()
lock.release()
print(after - before)
"""


def bench_guarded(work: Path, repeats: int) -> None:
    from journal_doctor.demo import GUARDED, _crash_holding_lock

    for workers in (1, 4):
        ours = statistics.median(_appends_per_second(work, "guarded", workers, 300)
                                 for _ in range(repeats))  # fmt: skip
        base = statistics.median(_appends_per_second(work, "optuna", workers, 300)
                                 for _ in range(repeats))  # fmt: skip
        ROWS.append(Row(f"append throughput, {workers} worker(s), guarded vs Optuna's lock",
                        f"{ours:,.0f} appends/s", f"JournalFileSymlinkLock: {base:,.0f}/s",
                        ours / base, ">= 0.8x", ours / base >= 0.8))  # fmt: skip
    held = work / "held.log"
    held.touch()
    seconds = 20.0
    cpu = float(subprocess.run([PYTHON, "-c", HOLD, str(held), str(seconds)], check=True,
                               capture_output=True, text=True).stdout)  # fmt: skip
    share = cpu / seconds * 100
    ROWS.append(Row("heartbeat cost while a lock is held (default 2 s interval)",
                    f"{share:.3f}% of a core ({cpu * 1000:.1f} ms CPU in {seconds:.0f} s)", "-",
                    None, "< 1%", share < 1.0))  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        lost = []
        for _ in range(repeats):
            journal = work / f"guarded-resume-{len(lost)}.log"
            _crash_holding_lock(str(journal), procs, GUARDED)
            stale = _timed_resume(journal)
            os.unlink(f"{journal}.lock") if os.path.lexists(f"{journal}.lock") else None
            clean = _timed_resume(journal)  # the same resume with no lock in the way
            lost.append(stale - clean)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    median = statistics.median(lost)
    ROWS.append(Row("time lost at resume after a SIGKILLed guarded holder",
                    f"{max(median, 0):.3f} s (resume on the dead holder's lock - resume on none)",
                    "Optuna alone: its 30 s grace period (row above)", None, "<= 0.1 s",
                    median <= 0.1))  # fmt: skip


def _timed_resume(journal: Path) -> float:
    start = time.perf_counter()
    subprocess.run([PYTHON, "-m", "journal_doctor.demo.worker", str(journal), "--trials", "3",
                    "--guarded"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


# 7. watch ------------------------------------------------------------------------------------


def bench_watch(work: Path) -> None:
    from journal_doctor.demo import _crash_holding_lock

    tree = work / "watch-tree"
    tree.mkdir()
    entries = build_tree(tree, studies=100, locks_every=10)
    watcher = subprocess.Popen([*DOCTOR, "watch", str(tree)], stdout=subprocess.DEVNULL)
    try:
        time.sleep(2)  # start-up
        before = psutil_cpu(watcher.pid)
        seconds = 30.0
        time.sleep(seconds)
        share = (psutil_cpu(watcher.pid) - before) / seconds * 100
    finally:
        watcher.terminate()
        watcher.wait()
    ROWS.append(Row(f"watch CPU at the default 5 s interval ({entries:,}-entry tree)",
                    f"{share:.2f}% of a core", "-", None, "<= 1%", share <= 1.0))  # fmt: skip
    # An Optuna worker resumed on a dangling lock (`runs/j.log`) never recovers alone.
    parent = work / "dangling"
    (parent / "runs").mkdir(parents=True)
    procs: list[subprocess.Popen[bytes]] = []
    interval, min_age = 5.0, 5.0
    try:
        os.chdir(parent)
        _crash_holding_lock("runs/j.log", procs)
        startup = _timed_plain_resume(parent, "fresh.log")
        command = [*DOCTOR, "watch", "--interval", str(interval), "--min-age", str(min_age)]
        watcher = subprocess.Popen([*command, str(parent)], stdout=subprocess.DEVNULL)
        try:
            took = _timed_plain_resume(parent, "runs/j.log")
        finally:
            watcher.terminate()
            watcher.wait()
    finally:
        os.chdir(work)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    bound = interval + min_age + startup
    baseline = f"interval + min-age + its start-up ({startup:.1f} s): {bound:.1f} s; alone: never"
    ROWS.append(Row("Optuna worker resumed on a dangling lock, watch running",
                    f"finished in {took:.1f} s", baseline, None, "<= that",
                    took <= bound))  # fmt: skip


def psutil_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _timed_plain_resume(cwd: Path, journal: str) -> float:
    start = time.perf_counter()
    subprocess.run([PYTHON, "-m", "journal_doctor.demo.worker", journal, "--trials", "3"],
                   cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)  # fmt: skip
    return time.perf_counter() - start


# 8. migrate ----------------------------------------------------------------------------------

COPY_STUDY = """
import sys, optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
optuna.logging.set_verbosity(optuna.logging.WARNING)
source = JournalStorage(JournalFileBackend(sys.argv[1]))
for study in source.get_all_studies():
    optuna.copy_study(from_study_name=study.study_name, from_storage=source, to_storage=sys.argv[2])
"""


LOAD = """
import sys, optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
source = JournalStorage(JournalFileBackend(sys.argv[1]))
for study in source.get_all_studies():
    source.get_all_trials(study._study_id, deepcopy=False)
"""


def bench_migrate(work: Path) -> None:
    journal = work / "migrate.log"
    write_journal(str(journal), 8_000_000)
    from journal_doctor.journal.check import check_journal

    trials = sum(check_journal(str(journal)).trials_by_state.values())
    ours, ours_rss = run_with_rss([*DOCTOR, "migrate", "--force", str(journal),
                                   f"sqlite:///{work / 'ours.db'}"])  # fmt: skip
    base, base_rss = run_with_rss([PYTHON, "-c", COPY_STUDY, str(journal),
                                   f"sqlite:///{work / 'base.db'}"])  # fmt: skip
    _, load_rss = run_with_rss([PYTHON, "-c", LOAD, str(journal)])
    ROWS.append(Row(f"migrate to SQLite, {trials:,} trials (copy and verify): time",
                    f"{ours:.1f} s", f"optuna.copy_study: {base:.1f} s",
                    ours / base, "<= 1x", ours <= base))  # fmt: skip
    ROWS.append(Row("migrate to SQLite: peak memory", f"{ours_rss / 1e6:.0f} MB",
                    f"optuna.copy_study: {base_rss / 1e6:.0f} MB (Optuna's load of the journal"
                    f" alone: {load_rss / 1e6:.0f} MB)", ours_rss / base_rss, "<= 1x",
                    ours_rss <= base_rss))  # fmt: skip


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}"
    )


NFS_APPEND = APPEND.replace("time.perf_counter()", "time.time()")  # hosts share no monotonic


def bench_nfs(work: Path, repeats: int) -> None:
    """Guarded appends against Optuna's own lock on the kernel NFS bed (tests/nfs: needs root
    and its install.sh), from one host and from two at once, NFSv3 and NFSv4.2."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from nfs.bed import Bed

    script = work / "append.py"
    script.write_text(NFS_APPEND)
    for vers in ("3", "4.2"):
        bed = Bed(vers, work / f"bed-{vers}")
        bed.state.mkdir()
        bed.script("teardown.sh")
        bed.script("setup.sh", timeout=300)
        try:
            bed.run("nfsA", "mkdir -p /mnt/nfs/bench")
            _nfs_rows(bed, script, f"NFSv{vers}", repeats)
            if vers.startswith("4"):
                with bed.without_delegations():
                    _nfs_rows(bed, script, f"NFSv{vers}, no delegations,", repeats)
        finally:
            bed.script("teardown.sh")


def _nfs_rows(bed: Any, script: Path, setup: str, repeats: int) -> None:
    for hosts in (("nfsA",), ("nfsA", "nfsB")):
        runs: dict[str, list[tuple[float, float]]] = {"guarded": [], "optuna": []}
        for _ in range(repeats):
            for mode in runs:  # in turn: the bed's speed drifts between runs
                runs[mode].append(_nfs_rate(bed, script, hosts, mode, 200))
        rate = {mode: statistics.median(r for r, _ in found) for mode, found in runs.items()}
        ratio = rate["guarded"] / rate["optuna"]
        ROWS.append(Row(f"{setup} append throughput, {len(hosts)} host(s), guarded",
                        f"{rate['guarded']:,.0f} appends/s",
                        f"JournalFileSymlinkLock: {rate['optuna']:,.0f}/s", ratio,
                        ">= 0.8x", ratio >= 0.8))  # fmt: skip
        if len(hosts) == 1:
            first = {mode: statistics.median(f for _, f in found) for mode, found in runs.items()}
            ROWS.append(Row(f"{setup} a process's first append (guarded: its record too)",
                            f"{first['guarded'] * 1000:.0f} ms",
                            f"JournalFileSymlinkLock: {first['optuna'] * 1000:.0f} ms",
                            first["guarded"] / first["optuna"], "-", None))  # fmt: skip


def _nfs_rate(
    bed: Any, script: Path, hosts: tuple[str, ...], mode: str, count: int
) -> tuple[float, float]:
    journal = f"/mnt/nfs/bench/{mode}-{len(hosts)}-{uuid.uuid4().hex[:6]}.log"
    procs = [subprocess.Popen(bed.ssh(host, f"{PYTHON} {script} {journal} {mode} {count}"),
                              stdout=subprocess.PIPE, text=True) for host in hosts]  # fmt: skip
    return append_spans([proc.communicate(timeout=600)[0] for proc in procs], count)


def render() -> None:
    width = max(len(r.name) for r in ROWS)
    print(f"\nMachine: {machine()}\n")
    print(f"| {'measure':<{width}} | ours | baseline (same run) | ratio | target | holds |")
    print(f"|{'-' * (width + 2)}|---|---|---|---|---|")
    for r in ROWS:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        holds = "-" if r.holds is None else ("yes" if r.holds else "NO")
        print(f"| {r.name:<{width}} | {r.ours} | {r.baseline} | {ratio} | {r.target} | {holds} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 MB journal, fewer repeats")
    parser.add_argument("--skip-resume", action="store_true", help="skip the 30 s resume run")
    parser.add_argument("--only", choices=["tree", "startup", "guarded", "migrate", "nfs"],
                        help="run one group of measures alone")  # fmt: skip
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    size = 100_000_000 if args.quick else 1_000_000_000
    compile_bytecode()
    work = Path(tempfile.mkdtemp(prefix="journal-doctor-bench-"))
    if args.only:
        try:
            if args.only == "tree":
                bench_tree_scan(work, repeats)
            elif args.only == "startup":
                (work / "empty").mkdir()
                bench_startup(work, repeats * 4 + 1)
            elif args.only == "guarded":
                bench_guarded(work, repeats)
            elif args.only == "nfs":
                bench_nfs(work, repeats)
            else:
                bench_migrate(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        render()
        return
    try:
        journals = bench_tree_scan(work, repeats)
        bench_startup(work, repeats * 4 + 1)
        bench_holders(journals, repeats)
        shutil.rmtree(work / "tree")
        bench_check(work, size, 3 if not args.quick else 2)
        if not args.skip_resume:
            bench_resume(work)
        bench_guarded(work, repeats)
        bench_watch(work)
        bench_migrate(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    render()


if __name__ == "__main__":
    main()
