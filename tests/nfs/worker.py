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
  stalled-append JOURNAL KIND GRACE TAG DELAY
                                     take the lock and append one op whose fsync starts DELAY
                                     seconds after its write (a cut between the two); prints
                                     "held", "wrote", then "written" or "lost: <message>"
"""

from __future__ import annotations

import os
import sys
import time

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


def optimize(journal: str, kind: str, grace: str, n: str, sleep: str, mode: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    say("started", os.getpid())  # before it waits for any lock
    if mode == "guarded":
        import journal_doctor

        callback = optuna.storages.RetryFailedTrialCallback(max_retry=3)
        storage = journal_doctor.storage(journal, lock=kind, heartbeat_interval=float(grace) / 5,
                                         grace_period=float(grace),
                                         failed_trial_callback=callback)  # fmt: skip
    else:
        from journal_doctor.journal.optuna_api import (
            file_backend_class,
            journal_storage_class,
            optuna_lock,
        )

        lock = optuna_lock(journal, KINDS[kind])
        storage = journal_storage_class()(file_backend_class()(journal, lock_obj=lock))
    study = optuna.create_study(study_name="nfs", storage=storage, load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        time.sleep(float(sleep))
        return x * x

    def done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        say("trial", trial.number, repr(trial.value), time.time())

    study.optimize(objective, n_trials=int(n), callbacks=[done])
    say("finished")


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
    }
    scenarios[sys.argv[1]](*sys.argv[2:])
