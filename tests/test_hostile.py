"""Hostile and broken inputs: every command; never a traceback, a hang, or a stray write."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal_doctor.journal.check import check_journal

from helpers import PYTHON, age_path, invoke, run_doctor

OP = b'{"op_code":0,"worker_id":"w-1","study_name":"s","directions":[0]}\n'
TRIAL = b'{"op_code":4,"worker_id":"w-1","study_id":0,"datetime_start":"2026-01-01T00:00:00"}\n'


def journal_with_lock(directory: Path, name: bytes, *, torn: bool = False) -> Path:
    base = os.fsencode(directory)
    journal = os.path.join(base, name)
    with open(journal, "wb") as f:
        f.write(OP + TRIAL + (b'{"op_code":6,"wor' if torn else b""))
    lock = journal + b".lock"
    os.symlink(name, lock)
    age_path(Path(os.fsdecode(lock)), 60)
    return Path(os.fsdecode(journal))


@pytest.fixture
def corpus(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "corpus"
    root.mkdir()
    for name in (b"new\nline.log", b"ansi\x1b[31m.log", b"[bold]markup.log", b"bad\xff\xfe.log"):
        journal_with_lock(root, name, torn=True)
    # Things at a lock name that Optuna never makes.
    for kind in ("dir", "fifo", "socket"):
        (root / f"{kind}.log").write_bytes(OP)
    (root / "dir.log.lock").mkdir()
    os.mkfifo(root / "fifo.log.lock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "socket.log.lock"))
    # Things where the journal should be.
    os.mkfifo(root / "pipe.log")
    os.symlink("pipe.log", root / "pipe.log.lock")
    if os.geteuid() == 0:
        os.mknod(root / "device.log", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
        os.symlink("device.log", root / "device.log.lock")
    # Loops: a lock linking to itself, a journal that is a symlink loop, a directory loop.
    (root / "loop.log").write_bytes(OP)
    os.symlink("loop.log.lock", root / "loop.log.lock")
    os.symlink("self.log", root / "self.log")
    os.symlink("self.log", root / "self.log.lock")
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "up")
    for path in (root / "loop.log.lock", root / "self.log.lock", root / "pipe.log.lock"):
        age_path(path, 60)
    try:
        yield root
    finally:
        server.close()


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode in (0, 1, 2), (result.returncode, result.stderr)


@pytest.mark.timeout(120)  # in process: a hang (a FIFO opened to block) fails here, not later
def test_every_command_over_the_corpus(corpus: Path) -> None:
    entries = sorted(corpus.iterdir())
    targets = [str(p) for p in entries] + [str(corpus / "missing.log"), str(corpus)]
    for fmt in ((), ("--json",)):
        no_traceback(invoke("scan", *fmt, str(corpus)))
        no_traceback(invoke("clean", "--dry-run", *fmt, str(corpus)))
        for target in targets:
            for command in (("check",), ("trials",), ("repair", "--dry-run")):
                result = invoke(*command, *fmt, target)
                no_traceback(result)
                if result.returncode == 2:
                    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for target in targets:
        no_traceback(invoke("repair", "--force", target))
        no_traceback(invoke("trials", "--fail", target))
    no_traceback(invoke("clean", "--force", str(corpus)))
    # What is not an Optuna lock is still there.
    assert (corpus / "dir.log.lock").is_dir()
    assert stat.S_ISFIFO(os.lstat(corpus / "fifo.log.lock").st_mode)
    assert stat.S_ISSOCK(os.lstat(corpus / "socket.log.lock").st_mode)
    assert os.path.islink(corpus / "loop.log.lock")


@pytest.mark.parametrize("name", ["pipe.log", "device.log"])
def test_fifo_or_device_as_journal_is_refused_at_once(corpus: Path, name: str) -> None:
    if not os.path.lexists(corpus / name):
        pytest.skip("making a device node needs root")
    for command in (("check",), ("repair", "--force"), ("trials",)):
        result = run_doctor(*command, str(corpus / name), timeout=20)  # a blocking open hangs
        assert result.returncode == 2
        assert name in result.stderr
        assert "not a journal file" in result.stderr
    # scan judges the lock beside it without opening the FIFO/device.
    result = run_doctor("scan", "--json", str(corpus / f"{name}.lock"), timeout=20)
    (lock,) = json.loads(result.stdout)["locks"]
    assert lock["journal_health"] == "not-a-file"


def test_hostile_names_through_clean_check_and_repair(corpus: Path) -> None:
    result = run_doctor("clean", "--force", str(corpus))
    assert "\x1b" not in result.stdout
    assert "new\\nline.log.lock" in result.stdout
    assert "bad\\xff\\xfe.log.lock" in result.stdout
    assert "[bold]markup.log.lock" in result.stdout
    for name in (b"new\nline.log", b"ansi\x1b[31m.log", b"[bold]markup.log", b"bad\xff\xfe.log"):
        path = os.fsdecode(os.path.join(os.fsencode(corpus), name))
        for command in (("check",), ("repair", "--force"), ("check", "--json")):
            result = run_doctor(*command, path)
            assert "\x1b" not in result.stdout + result.stderr
            if "--json" in command:
                json.loads(result.stdout)
        assert check_journal(path).healthy


def test_cleaning_a_lock_pointing_outside_the_tree_removes_only_the_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "j.log"
    target.write_bytes(OP * 100)
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "j.log").write_bytes(OP)
    os.symlink(str(target), tree / "j.log.lock")  # a journal given by an absolute path elsewhere
    age_path(tree / "j.log.lock", 60)
    result = run_doctor("clean", "--force", "--json", str(tree))
    assert json.loads(result.stdout)["removed"] == [str(tree / "j.log.lock")]
    assert not os.path.lexists(tree / "j.log.lock")
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(outside)) == ["j.log"]


def test_journal_swapped_for_a_symlink_before_the_rename_is_not_replaced(tmp_path: Path) -> None:
    import journal_doctor.actions.repair as repair_module

    journal = journal_with_lock(tmp_path, b"j.log", torn=True)
    os.unlink(f"{journal}.lock")
    elsewhere = tmp_path / "elsewhere.log"

    def swap(path: str) -> None:
        os.rename(path, elsewhere)
        os.symlink(elsewhere, path)

    before = journal.read_bytes()
    with pytest.raises(repair_module.RepairRefused, match="changed during the repair"):
        repair_module.repair(str(journal), force=True, before_replace=swap)
    assert os.path.islink(journal)  # the symlink was not replaced
    assert elsewhere.read_bytes() == before  # nor was the file behind it written
    assert not os.path.lexists(f"{journal}.lock")  # the doctor's lock is released
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    refused = run_doctor("repair", "--force", str(journal))
    assert refused.returncode == 2
    assert "symbolic link" in refused.stderr


def _rss_of(cmd: list[str]) -> tuple[int, int, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, out


@pytest.mark.slow
def test_one_gigabyte_without_a_newline_in_bounded_memory(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    with open(journal, "wb") as f:
        f.write(OP)
        f.truncate(1 << 30)  # sparse: 1 GiB of NULs after the first line, no newline
    code, rss, out = _rss_of([PYTHON, "-m", "journal_doctor", "check", "--json", str(journal)])
    (health,) = json.loads(out)["journals"]
    assert code == 1
    assert health["torn_tail_bytes"] == (1 << 30) - len(OP)
    assert health["prognosis"] == "next-worker-crashes"
    assert rss < 100 * 2**20
    code, rss, _ = _rss_of([PYTHON, "-m", "journal_doctor", "repair", "--force", str(journal)])
    assert code == 0
    assert rss < 200 * 2**20  # includes importing optuna to verify the result
    assert journal.read_bytes() == OP
    (record,) = [json.loads(x) for x in Path(f"{journal}.quarantine").read_text().splitlines()]
    assert record["length"] == (1 << 30) - len(OP)
    assert record["bytes_in_backup"].endswith(".bak")


@pytest.mark.slow
def test_a_million_tiny_lines(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    attr = b'{"op_code":2,"worker_id":"w-1","study_id":0,"user_attr":{"k":1}}\n'
    with open(journal, "wb") as f:
        f.write(OP + attr * 1_000_000)
    result = run_doctor("check", "--json", str(journal), timeout=120)
    (health,) = json.loads(result.stdout)["journals"]
    assert health["healthy"] is True
    assert health["ops"] == 1_000_001
    os.symlink("j.log", tmp_path / "j.log.lock")
    age_path(tmp_path / "j.log.lock", 60)
    result = run_doctor("scan", "--json", str(tmp_path))
    assert json.loads(result.stdout)["locks"][0]["journal_health"] == "ok"


def test_read_only_filesystem_clean_fails_cleanly(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a filesystem")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(mnt)],
                      capture_output=True, check=False).returncode != 0:  # fmt: skip
        pytest.skip("this sandbox cannot mount a tmpfs")
    try:
        journal_with_lock(mnt, b"j.log")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        result = run_doctor("clean", "--force", "--json", str(mnt))
        document = json.loads(result.stdout)
        (outcome,) = document["outcomes"]
        assert outcome["outcome"] == "failed"
        assert "Read-only file system" in outcome["detail"]
        assert result.returncode == 1
        human = run_doctor("clean", "--force", str(mnt))
        assert "read-write" in human.stdout
        repair = run_doctor("repair", "--force", str(mnt / "j.log"))
        no_traceback(repair)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_doctor_leftover_names_are_recognised_whatever_the_journal_name(tmp_path: Path) -> None:
    from journal_doctor.protocol.lockfile import doctor_break_name

    name = os.fsdecode(b"we\xffird\n.log.lock")
    (tmp_path / os.fsdecode(b"we\xffird\n.log")).write_bytes(OP)
    leftover = tmp_path / doctor_break_name(name, uuid.uuid4().hex)
    leftover.touch()
    result = run_doctor("scan", "--json", "--min-age", "0", str(tmp_path))
    (item,) = json.loads(result.stdout)["leftovers"]
    assert item["origin"] == "doctor-break"
