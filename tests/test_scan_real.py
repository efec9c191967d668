"""`scan` against real Optuna workers: killed, stopped, dangling and busy holders."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers import LOCK_KINDS, Workers, age_path, doctor_json, holding_open, poll, run_doctor

pytestmark = pytest.mark.slow


def key(path: str | Path) -> str:
    """A lock's canonical name: its directory resolved, the lock itself never followed."""
    directory, name = os.path.split(str(path))
    return os.path.join(os.path.realpath(directory), name)


def by_path(document: dict[str, Any], what: str = "locks") -> dict[str, dict[str, Any]]:
    return {key(item["path"]): item for item in document[what]}


def make_leftover(tmp: Path, workers: Workers) -> Path:
    """A real lock renamed the way Optuna's release renames it, the unlink never done."""
    journal = tmp / "left" / "j.log"
    journal.parent.mkdir()
    workers.kill_holding(journal)
    leftover = Path(f"{journal}.lock{uuid.uuid4()}.rename")
    os.rename(f"{journal}.lock", leftover)
    return leftover


def test_scan_judges_every_state_of_real_workers(tmp_path: Path, workers: Workers) -> None:
    leftover = make_leftover(tmp_path, workers)

    killed = {}
    for kind in LOCK_KINDS:
        journal = tmp_path / f"killed-{kind}" / "j.log"
        journal.parent.mkdir()
        workers.kill_holding(journal, kind)
        age_path(Path(f"{journal}.lock"), 3)
        killed[kind] = journal

    # A journal given as `runs/j.log` from its parent: the lock links to a path that resolves
    # to runs/runs/j.log.
    dangling_parent = tmp_path / "dangling"
    (dangling_parent / "runs").mkdir(parents=True)
    workers.kill_holding(Path("runs/j.log"), "symlink", cwd=dangling_parent)
    dangling_lock = dangling_parent / "runs" / "j.log.lock"
    age_path(dangling_lock, 3)

    stopped_journal = tmp_path / "stopped" / "j.log"
    stopped_journal.parent.mkdir()
    stopped = workers.stop_holding(stopped_journal)

    busy_journal = tmp_path / "busy" / "j.log"
    busy_journal.parent.mkdir()
    workers.start_busy(busy_journal)

    assert poll(lambda: os.stat(leftover).st_ctime < time.time() - 2.5, 10)
    code, document = doctor_json("scan", "--min-age", "2", str(tmp_path))
    assert code == 1
    locks = by_path(document)

    for kind, journal in killed.items():
        report = locks[key(f"{journal}.lock")]
        assert report["kind"] == ("symlink" if kind == "symlink" else "file")
        assert report["verdict"] == "orphaned", report
        assert report["holders"] == []

    dangling = locks[key(dangling_lock)]
    assert dangling["verdict"] == "orphaned"
    assert dangling["dangling"] is True
    assert dangling["target"] == "runs/j.log"
    assert "100% CPU" in dangling["reason"]

    stuck = locks[key(f"{stopped_journal}.lock")]
    assert stuck["verdict"] == "stuck"
    assert [h["pid"] for h in stuck["holders"]] == [stopped.pid]
    assert stuck["holders"][0]["status"] == "stopped"
    assert f"kill -CONT {stopped.pid}" in stuck["reason"]

    busy = locks.get(key(f"{busy_journal}.lock"))
    assert busy is None or busy["verdict"] in ("active", "recent")

    leftovers = by_path(document, "leftovers")
    assert leftovers[key(leftover)]["verdict"] == "orphaned"
    assert leftovers[key(leftover)]["origin"] == "optuna-release"
    assert document["removed"] == []
    assert document["schema"] == 1


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_busy_live_worker_is_never_orphaned(tmp_path: Path, workers: Workers, kind: str) -> None:
    journal = tmp_path / "j.log"
    workers.start_busy(journal, kind)
    workers.start_busy(journal, kind)
    seen = set()
    for _ in range(40):
        _code, document = doctor_json("scan", "--min-age", "0.5", str(tmp_path))
        for lock in document["locks"]:
            seen.add(lock["verdict"])
            assert lock["verdict"] != "orphaned", lock
            for holder in lock["holders"]:
                assert holder["pid"] in {p.pid for p in workers.procs}
    assert seen <= {"active", "recent"}


def test_holder_of_a_stopped_open_lock_is_named(tmp_path: Path, workers: Workers) -> None:
    journal = tmp_path / "j.log"
    proc = workers.stop_holding(journal, "open")
    code, document = doctor_json("scan", str(tmp_path))
    (lock,) = document["locks"]
    assert lock["kind"] == "file"
    assert lock["verdict"] == "stuck"
    assert lock["holders"][0]["pid"] == proc.pid
    assert code == 1


def test_reader_is_reported_as_worker_not_holder(tmp_path: Path, workers: Workers) -> None:
    journal = tmp_path / "j.log"
    workers.kill_holding(journal)
    age_path(Path(f"{journal}.lock"), 10)
    with holding_open(journal, "rb") as reader:
        _, document = doctor_json("scan", str(tmp_path))
    (lock,) = document["locks"]
    assert lock["verdict"] == "orphaned"
    assert [r["pid"] for r in lock["readers"]] == [reader.pid]
    assert lock["holders"] == []


def test_scan_of_empty_directory_exits_0(tmp_path: Path) -> None:
    code, document = doctor_json("scan", str(tmp_path))
    assert code == 0
    assert document["locks"] == []
    assert document["leftovers"] == []
    assert document["processes_examined"] == 0  # no lock, no pass over the process table


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = run_doctor("scan", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "nope" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_scan_does_not_import_optuna(tmp_path: Path) -> None:
    probe = (
        "import sys, runpy; sys.argv=['journal-doctor','scan','--json',sys.argv[1]];"
        "\ntry: runpy.run_module('journal_doctor', run_name='__main__')"
        "\nexcept SystemExit: pass"
        "\nprint('OPTUNA' if 'optuna' in sys.modules else 'CLEAN', file=sys.stderr)"
    )
    (tmp_path / "j.log").write_text('{"op_code":0}\n')
    os.symlink("j.log", tmp_path / "j.log.lock")
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.stderr.strip().splitlines()[-1] == "CLEAN", result.stderr


def test_holder_of_a_symlinked_journal_is_found(tmp_path: Path) -> None:
    # The fd of a process names the file the symlink points to, not the journal's own name.
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "study-2026.log"
    real.write_text('{"op_code":0}\n')
    journal = tmp_path / "j.log"
    os.symlink(real, journal)
    os.symlink("j.log", tmp_path / "j.log.lock")
    age_path(tmp_path / "j.log.lock", 60)
    with holding_open(real) as holder:
        _, document = doctor_json("scan", str(tmp_path))
    (lock,) = [lock for lock in document["locks"] if lock["path"].endswith("j.log.lock")]
    assert lock["verdict"] == "active"
    assert [h["pid"] for h in lock["holders"]] == [holder.pid]
