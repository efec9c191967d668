"""Opening files that other hosts share, without blocking on what is not a regular file.

The doctor opens journals and records with O_NONBLOCK, so that a FIFO put where a journal was
opens at once (and is then refused) instead of waiting for a writer. On a file with a lease,
the kernel answers such an open with EAGAIN while it breaks the lease: an NFSv4 server's local
open of a file it delegated to a client (measured on the NFS bed), a Samba oplock. That is a
wait, not an error: the open is tried again until the lease is given back, for as long as an
NFSv4 server may take to recall a delegation from an unreachable client (its lease time).
"""

from __future__ import annotations

import os
import time

LEASE_WAIT = 120.0  # seconds: nfsd's default lease is 90 s


def open_nonblocking(path: str, flags: int = os.O_RDONLY) -> int:
    """`os.open(path, flags | O_NONBLOCK | O_CLOEXEC)`, waiting out a lease break."""
    deadline = time.monotonic() + LEASE_WAIT
    pause = 0.01
    while True:
        try:
            return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
        except BlockingIOError:  # EAGAIN: a lease is being broken
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
