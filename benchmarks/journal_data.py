"""Build big journals with real op shapes: ops a real Optuna study wrote, repeated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile


def real_ops(trials: int = 50) -> list[bytes]:
    """The lines of a real study's journal (one study, `trials` trials with a param each)."""
    with tempfile.TemporaryDirectory() as tmp:
        journal = os.path.join(tmp, "seed.log")
        subprocess.run(
            [sys.executable, "-m", "journal_doctor.demo.worker", journal, "--trials", str(trials)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(journal, "rb") as f:
            return f.read().splitlines(keepends=True)


def write_journal(path: str, size: int, trials: int = 50) -> int:
    """Write a journal of about `size` bytes: the study's ops, then its trial ops repeated.

    Returns the number of lines. Repeated CREATE_TRIAL ops create new trials, so the replay is as
    heavy per line as a real study's.
    """
    lines = real_ops(trials)
    head, body = lines[0], b"".join(lines[1:])
    body_lines = len(lines) - 1
    # Each copy's CREATE_TRIAL ops make `trials` new trials: shift the trial ids its other ops
    # name, so that every trial is completed as in the real study.
    template = re.sub(rb'"trial_id":(\d+)', rb'"trial_id":%d', body.replace(b"%", b"%%"))
    ids = [int(m) for m in re.findall(rb'"trial_id":(\d+)', body)]
    count = 1
    copy = 0
    with open(path, "wb") as f:
        f.write(head)
        written = len(head)
        while written < size:
            chunk = template % tuple(i + copy * trials for i in ids)
            f.write(chunk)
            written += len(chunk)
            count += body_lines
            copy += 1
    return count


if __name__ == "__main__":
    target = sys.argv[1]
    size = int(float(sys.argv[2]))
    print(write_journal(target, size), "lines")
