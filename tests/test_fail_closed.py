"""Where the doctor cannot see, it says so: containers, file servers, unreadable locks, damaged
journals without a lock, non-journals, bad numbers and bad paths. Real namespaces, real users,
real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import (
    PYTHON,
    age_path,
    as_nobody,
    doctor_json,
    guarded_symlink_lock,
    in_container,
    need_root,
    nobody_command,
    poll,
    require,
    run_doctor,
    with_private_mounts,
    writes_journal,
)

OP = b'{"op_code":0,"worker_id":"w-1","study_name":"s","directions":[0]}\n'


def stale_lock(directory: Path, age: float = 10) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    journal = directory / "j.log"
    journal.write_bytes(OP)
    lock = directory / "j.log.lock"
    os.symlink("j.log", lock)
    age_path(lock, age)
    return lock


@pytest.mark.slow
def test_doctor_in_a_container_never_removes_a_frozen_holders_lock(
    tmp_path: Path, workers: object
) -> None:
    from helpers import Workers

    assert isinstance(workers, Workers)
    journal = tmp_path / "j.log"
    holder = workers.stop_holding(journal)  # SIGSTOPped with the journal open for writing
    lock = Path(f"{journal}.lock")
    age_path(lock, 10)  # past --min-age, within --shared-min-age

    # From the host the holder is visible: stuck.
    _, seen = doctor_json("scan", str(tmp_path))
    assert seen["locks"][0]["verdict"] == "stuck"
    # From a container sharing the volume it is not: never orphaned by the local rule.
    result = in_container("clean", "--force", "--json", str(tmp_path))
    document = json.loads(result.stdout)
    (judged,) = document["locks"]
    assert document["container"] is True
    assert judged["holders"] == []
    assert judged["verdict"] == "unknown"
    assert "container" in judged["reason"]
    assert "outside the container" in judged["reason"]
    assert document["removed"] == []
    assert os.path.lexists(lock)
    assert result.returncode == 1
    assert writes_journal(holder.pid, journal)  # still holding, still frozen
    holder.send_signal(signal.SIGCONT)
    assert poll(lambda: not os.path.lexists(lock) or holder.poll() is None, 10)


def test_container_uses_the_shared_rule_once_older_than_shared_min_age(tmp_path: Path) -> None:
    stale_lock(tmp_path, age=31)
    result = in_container("scan", "--json", str(tmp_path))
    (judged,) = json.loads(result.stdout)["locks"]
    assert judged["verdict"] == "orphaned"
    assert "--shared-min-age" in judged["reason"]
    assert "container" in judged["reason"]


NFS_TABLE = (
    "mountpoint -q /var/lib/nfs 2>/dev/null || true\n"
    "if [ -d /var/lib/nfs ]; then mount -t tmpfs jd /var/lib/nfs;"
    " else mount -t tmpfs jd /var/lib && mkdir /var/lib/nfs; fi\n"
    "printf '%s\\t*(rw,sync,no_subtree_check)\\n' {export} > /var/lib/nfs/etab"
)


def test_an_exported_directory_is_judged_by_the_shared_rule(tmp_path: Path) -> None:
    # Where clients' kernels set the times, a lock is aged by its ctime too (an NFSv3
    # exclusive create shows a 1970s verifier as its mtime): an mtime set back proves nothing,
    # so the old lock is made old for real, against a short --shared-min-age.
    old = stale_lock(tmp_path / "old", age=60)
    made = old.lstat().st_ctime
    assert poll(lambda: time.time() > made + 3, 10)
    young = stale_lock(tmp_path / "young", age=60)  # an mtime 60 s back, made just now
    script = NFS_TABLE.format(export=tmp_path)
    result = with_private_mounts(
        script, "clean", "--force", "--json", "--shared-min-age", "3", str(tmp_path)
    )
    document = json.loads(result.stdout)
    verdicts = {Path(lock["path"]).parent.name: lock for lock in document["locks"]}
    assert verdicts["young"]["verdict"] == "unknown"
    assert "exports" in verdicts["young"]["reason"]
    assert "kernel NFS" in verdicts["young"]["reason"]
    assert "clients" in verdicts["young"]["reason"]
    assert verdicts["old"]["verdict"] == "orphaned"
    assert os.path.lexists(young)
    assert not os.path.lexists(old)
    # The same tree, not exported: judged by its mtime, plainly orphaned.
    assert doctor_json("scan", str(tmp_path))[1]["locks"][0]["verdict"] == "orphaned"


def test_shared_flag_forces_the_shared_rule(tmp_path: Path) -> None:
    stale_lock(tmp_path, age=10)
    code, document = doctor_json("clean", "--force", "--shared", str(tmp_path))
    (lock,) = document["locks"]
    assert lock["verdict"] == "unknown"
    assert "--shared" in lock["reason"]
    assert document["removed"] == []
    assert code == 1
    code, document = doctor_json("clean", "--force", "--shared", "--shared-min-age", "5",
                                 str(tmp_path))  # fmt: skip
    assert document["locks"][0]["verdict"] == "orphaned"
    assert code == 0


def test_a_lock_that_cannot_be_read_is_unknown_never_dropped(public_tmp: Path) -> None:
    # A directory that can be listed but not searched: its names show, but lstat and readlink
    # fail (EACCES) as they fail with EPERM for an absolute symlink lock through sshfs.
    shared = public_tmp / "shared"
    stale_lock(shared, age=60)
    shared.chmod(0o744)
    result = as_nobody("scan", "--json", str(shared))
    document = json.loads(result.stdout)
    (lock,) = document["locks"]
    assert lock["verdict"] == "unknown"
    assert lock["unreadable"].startswith("Permission denied")
    assert "cannot be read" in lock["reason"]
    assert result.returncode == 1
    plain = as_nobody("scan", str(shared))
    assert "Nothing blocks a resume" not in plain.stdout
    assert "verdict=unknown" in plain.stdout
    assert plain.returncode == 1


# A live root process that holds the journal's lock, then creates the marker file argv[2].
HOLD_PLAIN = "import sys, time; f = open(sys.argv[1], 'ab'); open(sys.argv[2], 'w'); time.sleep(60)"
HOLD_GUARDED = (
    "import sys, time; from journal_doctor.guard.lock import GuardedLock;"
    " g = GuardedLock(sys.argv[1]); g.acquire(); open(sys.argv[2], 'w'); time.sleep(60)"
)


@pytest.mark.parametrize("holder", ["plain", "guarded"])
def test_a_holder_hidden_by_hidepid_is_never_judged_gone(public_tmp: Path, holder: str) -> None:
    """/proc mounted hidepid=2 hides root's processes from `nobody`, the doctor here. A live
    root holder must not look gone: a plain lock's (the hidepid mount was looked for at "/",
    not "/proc") nor a guarded one's (its record's pid was unreadable in /proc: "gone")."""
    import shlex
    import shutil

    need_root("unshare")
    if shutil.which("unshare") is None:
        require("unshare", "unshare (util-linux) is not installed")
    shared = public_tmp / "shared"
    if holder == "plain":
        lock = stale_lock(shared, age=10)  # past --min-age: orphaned if its holder is unseen
    else:
        shared.mkdir()
        (shared / "j.log").write_bytes(OP)
        lock = shared / "j.log.lock"
    held = public_tmp / "held"
    hold = [PYTHON, "-c", HOLD_PLAIN if holder == "plain" else HOLD_GUARDED,
            str(shared / "j.log"), str(held)]  # fmt: skip
    doctor, env = nobody_command("scan", "--json", str(shared))
    # A /proc of its own (Linux >= 5.8: options per mount), this pid namespace (no container)
    script = (f"mount -t proc -o hidepid=2 proc /proc\n{shlex.join(hold)} &\n"
              f"while [ ! -e {held} ]; do sleep 0.05; done\n"
              f"{shlex.join(doctor)}\nkill $!")  # fmt: skip
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script],
                            capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    (judged,) = json.loads(result.stdout)["locks"]
    assert judged["verdict"] == "unknown", judged
    assert "hidepid" in judged["reason"]
    assert os.path.lexists(lock)


def test_a_journal_in_an_unreadable_directory_says_permission_denied(public_tmp: Path) -> None:
    closed = public_tmp / "closed"
    closed.mkdir(mode=0o700)
    (closed / "j.log").write_bytes(OP)
    for command in (("check",), ("trials",), ("repair", "--dry-run"), ("scan",)):
        result = as_nobody(*command, str(closed / "j.log"))
        assert result.returncode == 1, (command, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert "Permission denied: run the doctor as root" in line
        assert "no such" not in line
        assert "root or as root" not in line


def test_scan_finds_damaged_journals_without_a_lock(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "torn.log").write_bytes(OP + b'{"op_code":4,"wor')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bricked.jsonl").write_bytes(OP + b'{"op_co' + OP + OP)
    (tmp_path / "healthy.log").write_bytes(OP)
    (tmp_path / "notes.log").write_bytes(b"INFO started\n{not json")  # a text log, not a journal
    code, document = doctor_json("scan", str(tmp_path))
    journals = {Path(j["path"]).name: j for j in document["journals"]}
    assert set(journals) == {"torn.log", "bricked.jsonl"}
    assert journals["torn.log"]["health"] == "torn-tail"
    assert journals["torn.log"]["prognosis"] == "next-worker-crashes"
    assert journals["bricked.jsonl"]["prognosis"] == "every-load-fails"
    assert document["locks"] == []
    assert code == 1
    plain = run_doctor("scan", str(tmp_path))
    assert "Nothing blocks a resume" not in plain.stdout
    assert "journal-doctor check" in plain.stdout
    (tmp_path / "a" / "torn.log").write_bytes(OP)
    (tmp_path / "b" / "bricked.jsonl").write_bytes(OP)
    code, document = doctor_json("scan", str(tmp_path))
    assert (code, document["journals"]) == (0, [])


def test_check_and_repair_refuse_what_is_not_a_journal(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"lr: 0.1\nepochs: 3\n")
    for command in (("check",), ("repair", "--force"), ("trials",), ("trials", "--fail")):
        result = run_doctor(*command, str(config))
        assert result.returncode == 2, (command, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert "not an Optuna journal" in line
        assert "nothing was changed" not in line  # check never writes: it is not news
    assert config.read_bytes() == b"lr: 0.1\nepochs: 3\n"
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]  # no backup, no quarantine


@pytest.mark.parametrize("value", ["nan", "-1", "-inf"])
@pytest.mark.parametrize("option", ["--min-age", "--shared-min-age", "--wait"])
def test_durations_reject_nan_and_negative(tmp_path: Path, option: str, value: str) -> None:
    stale_lock(tmp_path, age=0.1)
    command = "clean" if option == "--wait" else "scan"
    result = run_doctor(command, "--dry-run" if command == "clean" else "-q",
                        f"{option}={value}", str(tmp_path))  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert option in result.stderr
    assert os.path.lexists(tmp_path / "j.log.lock")


def test_inf_min_age_means_never_by_age(tmp_path: Path) -> None:
    import psutil

    up = time.time() - psutil.boot_time()
    stale_lock(tmp_path, age=up / 2)  # old, but younger than this machine's boot
    code, document = doctor_json("clean", "--force", "--min-age", "inf", str(tmp_path))
    assert document["locks"][0]["verdict"] == "recent"
    assert "--min-age inf" in document["locks"][0]["reason"]
    assert document["removed"] == []
    assert document["min_age"] is None  # JSON has no infinity: null means never by age
    assert code == 0  # recent blocks nobody; --wait would wait for it


def test_scan_of_a_fifo_or_a_plain_file_is_a_usage_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "notes.txt").write_text("hello\n")
    for name in ("pipe", "notes.txt"):
        result = run_doctor("scan", str(tmp_path / name), timeout=20)
        assert result.returncode == 2
        (line,) = result.stderr.strip().splitlines()
        assert name in line
        assert "give a directory, a journal or a lock file" in line


def other_hosts_stale_looking_lock(directory: Path, grace: float) -> Path:
    """A guarded symlink lock whose record names a holder this process cannot look up (another
    pid namespace: a container), its heartbeat (the journal's mtime) a minute old: stale by its
    timestamps."""
    from journal_doctor.protocol.record import new_token, this_process

    journal = directory / "j.log"
    journal.write_bytes(OP)
    record = this_process(token=new_token(), interval=3600, grace=grace)
    lock = guarded_symlink_lock(journal, replace(record, pid_namespace=1))
    age_path(lock, 60)
    age_path(journal, 60)
    return lock


@pytest.mark.parametrize("moves", [True, False], ids=["beat-moves", "beat-still"])
def test_another_hosts_stale_looking_heartbeat_is_watched_before_it_is_believed(
    tmp_path: Path, moves: bool
) -> None:
    """An NFSv4.2 client holding a delegation stamps its holder's beats with its own clock:
    one behind the server's leaves the heartbeat a few seconds old while the holder beats. A
    stale-looking beat of another host is watched (here for its 1 s grace period): one that moves
    meanwhile (even to a time still in the past) is alive; one that stays still is stale."""
    from journal_doctor.locks.discover import LockCandidate
    from journal_doctor.locks.observe import Observer
    from journal_doctor.protocol.record import Liveness

    grace = 1.0
    lock = other_hosts_stale_looking_lock(tmp_path, grace)
    journal = str(lock)[: -len(".lock")]
    observer = Observer()
    seen = observer.observe_lock(LockCandidate(path=str(lock), journal=journal, root=str(tmp_path)))
    assert seen is not None
    assert seen.record_judgement is not None
    assert seen.record_judgement.liveness is Liveness.STALE
    if moves:
        age_path(Path(journal), 50)  # a beat, stamped ten seconds later by a lagging clock
    started = time.monotonic()
    (watched,) = observer.watch_stale([seen])
    assert time.monotonic() - started >= grace * 0.9
    assert watched.record_judgement is not None
    if moves:
        assert watched.record_judgement.liveness is Liveness.BEATING
        assert "moved while watched" in watched.record_judgement.why
    else:
        assert watched.record_judgement.liveness is Liveness.STALE
        assert "unchanged while watched for 1s" in watched.record_judgement.why


def test_through_sshfs_another_hosts_holder_is_never_judged() -> None:
    """sshfs caches attributes and names for 20 s (a rename carries them to the new name): on
    the two-host bed a waiter there saw a busy holder's lock still for 21 s and broke it. Seen
    through a FUSE network filesystem, another host's holder is unknown, whatever its beat."""
    from journal_doctor.protocol.record import Liveness, judge_record, this_process

    elsewhere = replace(this_process(token="t", interval=1.0, grace=1.0), pid_namespace=1)
    stale = judge_record(elsewhere, time.time() - 60, time.time())
    assert stale.liveness is Liveness.STALE
    through = judge_record(elsewhere, time.time() - 60, time.time(), caching="fuse.sshfs")
    assert through.liveness is Liveness.UNKNOWN
    assert "seen through fuse.sshfs" in through.why
    assert f"on {elsewhere.host}" in through.why
    mine = this_process(token="t", interval=1.0, grace=1.0)
    assert judge_record(mine, time.time(), time.time(), caching="fuse.sshfs").liveness is (
        Liveness.ALIVE
    )  # its own host's holders are judged by /proc, through any filesystem


def test_clean_that_did_nothing_says_why_in_the_words_scan_uses(public_tmp: Path) -> None:
    """An unreadable directory: scan says so; clean (dry run, forced, JSON) says the same
    instead of only `nothing to do`, and exits 1."""
    (public_tmp / "closed").mkdir(mode=0o700)
    why = f"Could not read {public_tmp / 'closed'}: Permission denied"
    scanned = as_nobody("scan", str(public_tmp))
    assert why in scanned.stdout
    for options in (("--dry-run",), ("--force",)):
        cleaned = as_nobody("clean", *options, str(public_tmp))
        assert cleaned.returncode == 1, cleaned.stderr
        assert why in cleaned.stdout, cleaned.stdout
        assert "nothing removed" in cleaned.stdout
        assert "nothing to do" not in cleaned.stdout
    as_json = as_nobody("clean", "--force", "--json", str(public_tmp))
    document = json.loads(as_json.stdout)
    assert [p["path"] for p in document["problems"]] == [str(public_tmp / "closed")]
    assert why in as_json.stderr  # a job log that keeps stderr sees why it stopped
    assert as_json.returncode == 1


def test_infinite_thresholds_and_waits_say_what_they_mean(tmp_path: Path) -> None:
    fresh = tmp_path / "runs"
    fresh.mkdir()
    (fresh / "j.log").write_bytes(OP)
    os.symlink("j.log", fresh / "j.log.lock")
    never = run_doctor("scan", "--min-age", "inf", str(fresh))
    assert "never judged by age with an infinite" in never.stdout
    assert "--wait" not in never.stdout  # a wait that could never end is not suggested
    for option in ("--wait", "--interval"):
        command = "clean" if option == "--wait" else "watch"
        for bad in ("-5", "inf"):
            refused = run_doctor(command, option, bad, str(fresh))
            assert refused.returncode == 2
            assert "give a number of seconds >= 0" in refused.stderr
            assert "never by age" not in refused.stderr
