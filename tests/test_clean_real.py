"""`clean` against real Optuna workers: consent, the break protocol, resume, races, conflicts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import journal_doctor
from journal_doctor.model import OutcomeKind, Verdict
from journal_doctor.protocol.lockfile import doctor_break_name

from helpers import (
    LOCK_KINDS,
    PYTHON,
    Workers,
    age_path,
    doctor_json,
    holding_open,
    poll,
    run_doctor,
)

pytestmark = pytest.mark.slow


def lexists(path: Path | str) -> bool:
    return os.path.lexists(path)


@pytest.fixture
def crashed_tree(tmp_path: Path, workers: Workers) -> dict[str, Path]:
    """Killed holders of both kinds, a dangling lock, a stopped holder and a leftover."""
    tree: dict[str, Path] = {}
    for kind in LOCK_KINDS:
        journal = tmp_path / kind / "j.log"
        journal.parent.mkdir()
        workers.kill_holding(journal, kind)
        tree[kind] = Path(f"{journal}.lock")
    (tmp_path / "dangling" / "runs").mkdir(parents=True)
    workers.kill_holding(Path("runs/j.log"), cwd=tmp_path / "dangling")
    tree["dangling"] = tmp_path / "dangling" / "runs" / "j.log.lock"
    stopped = tmp_path / "stopped" / "j.log"
    stopped.parent.mkdir()
    tree["stopped_pid"] = Path(str(workers.stop_holding(stopped).pid))
    tree["stopped"] = Path(f"{stopped}.lock")
    leftover_journal = tmp_path / "left" / "j.log"
    leftover_journal.parent.mkdir()
    workers.kill_holding(leftover_journal)
    tree["leftover"] = Path(f"{leftover_journal}.lock{uuid.uuid4()}.rename")
    os.rename(f"{leftover_journal}.lock", tree["leftover"])
    for name in ("symlink", "open", "dangling"):
        age_path(tree[name], 10)
    assert poll(lambda: os.lstat(tree["leftover"]).st_ctime < time.time() - 1.2, 10)
    return tree


ORPHANS = ("symlink", "open", "dangling", "leftover")


def test_no_tty_refuses_dry_run_shows_force_removes(crashed_tree: dict[str, Path]) -> None:
    root = crashed_tree["symlink"].parent.parent
    args = ("--min-age", "1", str(root))

    refused = run_doctor("clean", *args, stdin="")
    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert "--dry-run" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert all(lexists(crashed_tree[name]) for name in ORPHANS)

    # A kill can also land between a release's rename and its unlink: such `.rename` files are
    # real leftovers too, and as old as the locks.
    expected = {str(crashed_tree[name]) for name in ORPHANS}
    expected |= {str(p) for p in root.rglob("*.rename")}

    code, dry = doctor_json("clean", "--dry-run", *args)
    assert code == 1
    assert dry["removed"] == []
    would = {o["path"] for o in dry["outcomes"] if o["outcome"] == "would-remove"}
    assert would == expected
    assert all(lexists(path) for path in expected)

    code, done = doctor_json("clean", "--force", *args)
    assert set(done["removed"]) == expected
    assert not any(lexists(crashed_tree[name]) for name in ORPHANS)
    # The stopped holder's lock stays, and it alone keeps the exit code at 1.
    assert lexists(crashed_tree["stopped"])
    kept = [o for o in done["outcomes"] if o["path"] == str(crashed_tree["stopped"])]
    assert kept[0]["outcome"] == "kept"
    assert kept[0]["verdict"] == "stuck"
    assert code == 1

    # A human run says which pid to continue or end.
    human = run_doctor("clean", "--force", *args)
    assert f"kill -CONT {crashed_tree['stopped_pid']}" in human.stdout


def test_clean_exits_0_when_nothing_blocks_afterwards(tmp_path: Path, workers: Workers) -> None:
    journal = tmp_path / "j.log"
    workers.kill_holding(journal, "open")
    age_path(Path(f"{journal}.lock"), 10)
    code, done = doctor_json("clean", "--force", str(tmp_path))
    assert code == 0
    assert removed_the_lock_and_only_leftovers(done, tmp_path / "j.log.lock")
    assert doctor_json("scan", str(tmp_path))[0] == 0


def removed_the_lock_and_only_leftovers(done: dict[str, Any], lock: Path) -> bool:
    """The lock was removed; anything else removed is a `.rename` leftover that a kill in
    kill_holding's loop left between a release's rename and unlink."""
    others = [p for p in done["removed"] if p != str(lock)]
    return str(lock) in done["removed"] and all(p.endswith(".rename") for p in others)


def _running_share(pid: int, samples: int = 200) -> float:
    """How often the process is running or runnable (state R) rather than asleep: a spinning
    loop is R whatever the machine's load (then it waits its turn, runnable), a waiter that
    sleeps between tries is S almost always. No CPU figure, which the load would move."""
    running = 0
    for _ in range(samples):
        stat = Path(f"/proc/{pid}/stat").read_text()
        running += stat.rsplit(")", 1)[1].split()[0] == "R"
        time.sleep(0.005)
    return running / samples


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_resume_waits_on_a_stale_lock_until_clean_removes_it(
    tmp_path: Path, workers: Workers, kind: str
) -> None:
    journal = tmp_path / "j.log"
    workers.kill_holding(journal, kind)
    resumed = workers.start(journal, kind, trials=3)
    # Optuna's own grace period is 30 s: after 8 s the resumed worker is still waiting.
    assert not poll(lambda: resumed.poll() is not None, 8)
    age_path(Path(f"{journal}.lock"), 10)
    started = time.monotonic()
    code, done = doctor_json("clean", "--force", str(tmp_path))
    assert code == 0, done
    assert removed_the_lock_and_only_leftovers(done, tmp_path / "j.log.lock")
    assert resumed.wait(timeout=20) == 0, resumed.stderr.read() if resumed.stderr else ""
    assert time.monotonic() - started < 20


def test_dangling_lock_spins_forever_until_clean(tmp_path: Path, workers: Workers) -> None:
    (tmp_path / "runs").mkdir()
    workers.kill_holding(Path("runs/j.log"), cwd=tmp_path)
    resumed = workers.start(Path("runs/j.log"), cwd=tmp_path, trials=3)
    # Waiters on a dangling symlink never sleep and the grace period never fires.
    assert not poll(lambda: resumed.poll() is not None, 3)
    assert _running_share(resumed.pid) > 0.8
    age_path(tmp_path / "runs" / "j.log.lock", 10)
    code, _ = doctor_json("clean", "--force", str(tmp_path))
    assert code == 0
    assert resumed.wait(timeout=20) == 0


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_clean_racing_busy_workers_removes_nothing(
    tmp_path: Path, workers: Workers, kind: str
) -> None:
    journal = tmp_path / "j.log"
    for _ in range(3):
        workers.start_busy(journal, kind)
    deadline = time.monotonic() + 6
    runs = saw_lock = 0
    while time.monotonic() < deadline:
        report = journal_doctor.clean([str(tmp_path)], force=True)
        runs += 1
        saw_lock += bool(report.scan.locks)
        assert report.removed == ()
        for outcome in report.outcomes:
            assert outcome.outcome is not OutcomeKind.REMOVED
    for proc in workers.procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    assert runs > 10
    assert saw_lock > 0  # the doctor did meet live locks, and left them alone
    with open(journal, "rb") as f:
        lines = f.read().split(b"\n")
    for line in lines[:-1]:
        json.loads(line)
    load = subprocess.run(
        [
            PYTHON,
            "-c",
            "import optuna,sys; from optuna.storages.journal import *;"
            " s=optuna.load_study(study_name='doctor-demo', storage=JournalStorage("
            "JournalFileBackend(sys.argv[1]))); print(len(s.trials))",
            str(journal),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert load.returncode == 0, load.stderr
    assert int(load.stdout) > 0


def test_conflict_lock_replaced_between_judgement_and_break(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    journal.write_text('{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\n')
    lock = tmp_path / "j.log.lock"
    os.symlink(str(journal), lock)
    age_path(lock, 60)

    def replace_lock(path: str) -> None:
        # A worker releases the stale lock (Optuna's rename+unlink) and another takes a new one.
        released = f"{path}{uuid.uuid4()}.rename"
        os.rename(path, released)
        os.unlink(released)
        os.symlink(str(journal), path)

    report = journal_doctor.clean([str(tmp_path)], force=True, before_break=replace_lock)
    (outcome,) = report.outcomes
    assert outcome.outcome is OutcomeKind.CONFLICT
    assert "left untouched" in outcome.detail  # checked where it is: never moved
    assert report.removed == ()
    assert lexists(lock)
    assert os.readlink(lock) == str(journal)
    assert os.lstat(lock).st_mtime > time.time() - 30  # the fresh lock, not the judged one
    assert not [p for p in os.listdir(tmp_path) if "journal-doctor" in p]
    assert report.needs_attention()


def test_conflict_when_name_taken_again_leaves_judged_file_as_doctor_leftover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "j.log"
    journal.write_text("")
    lock = tmp_path / "j.log.lock"
    lock.touch()
    age_path(lock, 60)
    taken: list[str] = []

    original_rename = os.rename

    def rename_then_someone_takes_name(src: str, dst: str, **kw: int) -> None:
        if "journal-doctor" in str(dst):
            # Between the check in place and the rename, a worker releases the judged lock
            # and another takes a new one, which the rename then moves aside...
            os.unlink(lock)
            Path(lock).touch()
            taken.append(str(lock))
        original_rename(src, dst, **kw)
        if "journal-doctor" in str(dst):
            Path(lock).touch()  # ...and yet another worker takes the free name at once

    monkeypatch.setattr(os, "rename", rename_then_someone_takes_name)
    report = journal_doctor.clean([str(tmp_path)], force=True)
    monkeypatch.undo()
    (outcome,) = report.outcomes
    assert outcome.outcome is OutcomeKind.CONFLICT
    assert "newer lock" in outcome.detail
    assert lexists(lock)
    leftovers = journal_doctor.scan([str(tmp_path)]).leftovers
    assert [leftover.origin.value for leftover in leftovers] == ["doctor-break"]


def test_interrupted_doctor_break_is_a_leftover(tmp_path: Path) -> None:
    (tmp_path / "j.log").write_text("")
    name = doctor_break_name("j.log.lock", uuid.uuid4().hex)
    (tmp_path / name).touch()
    report = journal_doctor.scan([str(tmp_path)], min_age=0)
    (leftover,) = report.leftovers
    assert leftover.origin.value == "doctor-break"
    assert leftover.verdict is Verdict.ORPHANED
    cleaned = journal_doctor.clean([str(tmp_path)], force=True, min_age=0)
    assert cleaned.removed == (str(tmp_path / name),)


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr to make a dir immutable")
def test_failed_removal_names_the_os_error_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "j.log").write_text("")
    lock = tmp_path / "j.log.lock"
    os.symlink("j.log", lock)
    age_path(lock, 60)
    if subprocess.run(["chattr", "+i", str(tmp_path)], check=False).returncode != 0:
        pytest.skip("this filesystem does not support the immutable attribute")
    try:
        code, done = doctor_json("clean", "--force", str(tmp_path))
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path)], check=True)
    (outcome,) = done["outcomes"]
    assert outcome["outcome"] == "failed"
    assert "Operation not permitted" in outcome["detail"]
    assert done["removed"] == []
    assert code == 1
    assert lexists(lock)


def test_wait_waits_out_a_young_lock_then_cleans(tmp_path: Path) -> None:
    (tmp_path / "j.log").write_text("")
    lock = tmp_path / "j.log.lock"
    os.symlink("j.log", lock)
    started = time.monotonic()
    code, done = doctor_json("clean", "--force", "--wait", "20", "--min-age", "2", str(tmp_path))
    assert code == 0
    assert done["removed"] == [str(lock)]
    assert done["waited_seconds"] >= 1.5
    assert time.monotonic() - started < 20


def test_wait_times_out_on_an_active_holder_and_exits_1(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    journal.write_text("")
    os.symlink("j.log", tmp_path / "j.log.lock")
    with holding_open(journal) as holder:
        code, done = doctor_json("clean", "--force", "--wait", "1", str(tmp_path))
        assert code == 1
        assert done["wait_timed_out"] is True
        assert done["removed"] == []
        human = run_doctor("clean", "--force", "--wait", "1", str(tmp_path))
        assert "Still active" in human.stdout
        assert str(holder.pid) in human.stdout
    assert lexists(tmp_path / "j.log.lock")


def test_demo_runs_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    result = subprocess.run(
        [PYTHON, "-m", "journal_doctor", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(env_tmp), "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for step in ("Crash", "journal-doctor scan", "journal-doctor clean --force", "Resume", "Done"):
        assert step in result.stdout
    assert "removed" in result.stdout
    assert list(env_tmp.iterdir()) == []
    # No advice to run a command on the directory the demo removes when it ends.
    assert "Run `journal-doctor clean" not in result.stdout


def test_directory_replaced_between_scan_and_break_is_a_conflict(tmp_path: Path) -> None:
    from journal_doctor.locks.clean import execute

    study = tmp_path / "study"
    study.mkdir()
    (study / "j.log").write_text("")
    (study / "j.log.lock").touch()
    age_path(study / "j.log.lock", 60)
    report = journal_doctor.scan([str(tmp_path)])
    # Same lock inode (a hard link), but in a new directory at the same path.
    os.rename(study, tmp_path / "old")
    study.mkdir()
    (study / "j.log").write_text("")
    os.link(tmp_path / "old" / "j.log.lock", study / "j.log.lock")
    (outcome,) = execute(report)
    assert outcome.outcome is OutcomeKind.CONFLICT
    assert "directory was replaced" in outcome.detail
    assert lexists(study / "j.log.lock")
    assert lexists(tmp_path / "old" / "j.log.lock")
