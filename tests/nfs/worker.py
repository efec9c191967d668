"""What the NFS tests run on a guest (its root is this machine's /, so the test's venv runs
there as it is). One scenario per call; every line it prints is one event, read by the test.

  hold JOURNAL KIND GRACE            take the guarded lock and open the journal to append (a
                                     holder mid-write), print "held PID", hold it (beating)
                                     until stdin says anything, then print what it still holds
  plain-hold JOURNAL KIND            the same with Optuna's own lock (no record, no heartbeat)
  take-release JOURNAL KIND GRACE    take and release the guarded lock once, print "done";
                                     then, at a line on stdin, take it again: "acquired", and
                                     print "released" after releasing it
  optimize JOURNAL KIND GRACE N SLEEP MODE
                                     an Optuna worker (MODE guarded: journal_doctor.storage()
                                     with a retry callback; plain: Optuna's own lock) running
                                     N trials of SLEEP seconds; "trial NUMBER VALUE TIME" each
  frozen-append JOURNAL KIND GRACE TAG
                                     take the lock, print "held PID", at a line on stdin append
                                     one op through the fenced write: "refused" while it may
                                     have lost the lock, "written LOST" once written
  soak JOURNAL KIND GRACE MODE STOP SLEEP
                                     a soak's worker (MODE guarded, plain, rustuna): "ack
                                     NUMBER VALUE TIME" per trial told COMPLETE, until file STOP
  watch-renames DIR NAME             "watching", then at a line on stdin "renamed N": how often
                                     NAME was renamed away in DIR meanwhile (inotify)
  audit JOURNAL STUDY                 one JSON line: health, Optuna's load, COMPLETEs per trial
  stalled-append JOURNAL KIND GRACE TAG DELAY
                                     take the lock and append one op whose fsync starts DELAY
                                     seconds after its write (a cut between the two); prints
                                     "held", "wrote", then "written" or "lost: <message>"
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from journal_doctor.errors import LockLost
from journal_doctor.guard.lock import GuardedLock
from journal_doctor.model import LockKind

KINDS = {"symlink": LockKind.SYMLINK, "open": LockKind.FILE}


def say(*words: object) -> None:
    print(*words, flush=True)


def guard(journal: str, kind: str, grace: str) -> GuardedLock:
    return GuardedLock(journal, KINDS[kind], heartbeat_interval=float(grace) / 5,
                       grace_period=float(grace))  # fmt: skip


def hold(journal: str, kind: str, grace: str) -> None:
    lock = guard(journal, kind, grace)
    lock.acquire()
    writing = open(journal, "ab")  # a holder in the middle of its write  # noqa: SIM115
    say("held", os.getpid())
    sys.stdin.readline()
    writing.close()
    still = lock.still_held()
    lock.release()
    say("released", f"still_held={still}", f"lost={lock.lost}")


def plain_hold(journal: str, kind: str) -> None:
    from journal_doctor.journal.optuna_api import optuna_lock

    lock = optuna_lock(journal, KINDS[kind])
    lock.acquire()
    writing = open(journal, "ab")  # a holder in the middle of its write  # noqa: SIM115
    say("held", os.getpid())
    sys.stdin.readline()
    writing.close()
    lock.release()
    say("released")


def take_release(journal: str, kind: str, grace: str) -> None:
    lock = guard(journal, kind, grace)
    lock.acquire()
    lock.release()
    say("done", os.getpid())
    if sys.stdin.readline():
        lock.acquire()
        say("acquired", time.time())
        lock.release()
        say("released")


def optuna_study(
    journal: str, kind: str, grace: str, mode: str, name: str, *, soak: bool = False
) -> Any:
    """Study `name` through `journal_doctor.storage()` (MODE guarded: its trials of dead workers
    failed and retried, three times, or without end in a soak) or Optuna's own lock (plain:
    Optuna's grace period, or in a soak three times the guarded one's)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if mode == "guarded":
        import journal_doctor

        callback = optuna.storages.RetryFailedTrialCallback(max_retry=None if soak else 3)
        storage = journal_doctor.storage(journal, lock=kind, heartbeat_interval=float(grace) / 5,
                                         grace_period=float(grace),
                                         failed_trial_callback=callback)  # fmt: skip
    else:
        from journal_doctor.journal.optuna_api import (
            file_backend_class,
            journal_storage_class,
            optuna_lock,
        )

        options = {"grace_period": float(grace) * 3} if soak else {}
        lock = optuna_lock(journal, KINDS[kind], **options)
        storage = journal_storage_class()(file_backend_class()(journal, lock_obj=lock))
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True)


def objective(sleep: str) -> Callable[[Any], float]:
    def evaluate(trial: Any) -> float:
        x: float = trial.suggest_float("x", -10, 10)
        time.sleep(float(sleep))
        return x * x

    return evaluate


def optimize(journal: str, kind: str, grace: str, n: str, sleep: str, mode: str) -> None:
    import optuna  # noqa: F401 - loaded before "started", so the journal follows it soon

    say("started", os.getpid())  # before it waits for any lock
    study = optuna_study(journal, kind, grace, mode, "nfs")

    def done(study: Any, trial: Any) -> None:
        say("trial", trial.number, repr(trial.value), time.time())

    study.optimize(objective(sleep), n_trials=int(n), callbacks=[done])
    say("finished")


def soak(journal: str, kind: str, grace: str, mode: str, stop_file: str, sleep: str) -> None:
    """A soak's worker (MODE guarded, plain or rustuna) on study "soak": "ack NUMBER VALUE TIME"
    once a trial's COMPLETE was written (what the worker was told), until STOP_FILE exists."""
    say("started", os.getpid())
    if mode == "rustuna":
        return _rustuna_soak(journal, stop_file, float(sleep))
    from optuna.trial import TrialState

    study = optuna_study(journal, kind, grace, mode, "soak", soak=True)

    def acked(study: Any, trial: Any) -> None:
        if trial.state == TrialState.COMPLETE:
            say("ack", trial.number, repr(trial.value), time.time())
        if os.path.exists(stop_file):
            study.stop()

    study.optimize(objective(sleep), n_trials=10**9, callbacks=[acked])
    say("finished")


def _rustuna_soak(journal: str, stop_file: str, sleep: float) -> None:
    import rustuna

    storage = rustuna.storages.JournalFileStorage(journal)
    study = rustuna.create_study(study_name="soak", storage=storage, load_if_exists=True)
    while not os.path.exists(stop_file):
        trial = study.ask()
        x = trial.suggest_float("x", -10, 10)
        time.sleep(sleep)
        study.tell(trial.number, x * x)
        say("ack", trial.number, repr(x * x), time.time())
    say("finished")


def watch_renames(directory: str, name: str) -> None:
    """Print "watching", then count the renames of `name` away in `directory` (inotify's
    IN_MOVED_FROM: every rename, however brief, even one put back) until stdin says anything;
    print "renamed N". Run on the server, where every client's rename happens."""
    import ctypes
    import select
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    in_moved_from = 0x40
    if fd < 0 or libc.inotify_add_watch(fd, directory.encode(), in_moved_from) < 0:
        raise OSError(ctypes.get_errno(), "inotify")
    say("watching")
    renamed = 0
    while True:
        ready, _, _ = select.select([fd, sys.stdin], [], [])
        if fd in ready:
            data = os.read(fd, 65536)
            while data:
                _, _, _, size = struct.unpack_from("iIII", data)
                moved = data[16 : 16 + size].rstrip(b"\0").decode()
                renamed += moved == name
                data = data[16 + size :]
        if sys.stdin in ready:
            say("renamed", renamed)
            return


def audit(journal: str, study_name: str) -> None:
    """One JSON line: `audit_journal`."""
    import json

    print(json.dumps(audit_journal(journal, study_name)))


def audit_journal(journal: str, study_name: str) -> dict[str, object]:
    """The journal's health, Optuna's load of the study (each trial's number, state, value, and
    the trial it retries), and how often each trial's COMPLETE is written."""
    import json

    import optuna

    from journal_doctor.journal.check import check_journal
    from journal_doctor.journal.optuna_api import file_backend_class, journal_storage_class

    health = check_journal(journal)
    out: dict[str, object] = {"healthy": health.healthy, "summary": health.summary}
    completes: dict[int, int] = {}
    with open(journal, "rb") as f:
        for line in f:
            try:
                op = json.loads(line)
            except ValueError:
                continue
            if isinstance(op, dict) and op.get("op_code") == 6 and op.get("state") == 1:
                completes[op.get("trial_id")] = completes.get(op.get("trial_id"), 0) + 1
    try:
        storage = journal_storage_class()(file_backend_class()(journal))
        study = optuna.load_study(study_name=study_name, storage=storage)
        out["trials"] = [
            {"number": t.number, "state": t.state.name, "value": t.value,
             "retry_of": t.system_attrs.get("failed_trial")}
            for t in study.trials
        ]  # fmt: skip
        out["completes"] = {str(t.number): completes.get(t._trial_id, 0) for t in study.trials}
        out["loads"] = True
    except Exception as err:  # whatever Optuna raises, the journal does not load
        out["loads"] = False
        out["error"] = f"{type(err).__name__}: {err}"[:300]
    return out


def op(tag: str) -> bytes:
    """SET_STUDY_USER_ATTR on study 0: `tag` appears in the journal once per op written."""
    attr = f'"user_attr":{{"{tag}":1}}'
    return f'{{"op_code":2,"worker_id":"{tag}-0","study_id":0,{attr}}}\n'.encode()


def frozen_append(journal: str, kind: str, grace: str, tag: str) -> None:
    lock = guard(journal, kind, grace)
    lock.acquire()
    say("held", os.getpid())
    sys.stdin.readline()
    while not lock.append(journal, op(tag)):
        say("refused")
        lock.release()
        lock.acquire()
    lock.release()
    say("written", lock.lost)


def stalled_append(journal: str, kind: str, grace: str, tag: str, delay: str) -> None:
    real_fsync = os.fsync

    def late_fsync(fd: int) -> None:
        say("wrote")
        time.sleep(float(delay))  # the link is cut meanwhile: the write sits in the page cache
        real_fsync(fd)

    lock = guard(journal, kind, grace)
    lock.acquire()
    say("held", os.getpid())
    os.fsync = late_fsync
    try:
        lock.append(journal, op(tag))
    except LockLost as lost:
        say("lost:", lost)
        return
    except OSError as err:
        say("error:", repr(err))
        return
    finally:
        os.fsync = real_fsync
    lock.release()
    say("written", lock.lost)


if __name__ == "__main__":
    scenarios = {
        "hold": hold,
        "plain-hold": plain_hold,
        "take-release": take_release,
        "optimize": optimize,
        "frozen-append": frozen_append,
        "stalled-append": stalled_append,
        "soak": soak,
        "audit": audit,
        "watch-renames": watch_renames,
    }
    scenarios[sys.argv[1]](*sys.argv[2:])
