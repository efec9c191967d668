"""What a journal's worker ids say of their writer.

Optuna writes `<uuid4>-<thread id>`: a uuid per storage object, no pid, no host. Rustuna 0.2
writes `<number>-<pid>-ThreadId(<n>)`: the pid of its process, as that process's own pid
namespace numbers it (a container's pid means nothing outside it), and no host either.
"""

from __future__ import annotations

import re

_RUSTUNA = re.compile(r"\d+-(\d+)-ThreadId\(\d+\)")


def rustuna_pid(worker_id: str | None) -> int | None:
    """The pid in a Rustuna worker id; None for any other writer's."""
    match = _RUSTUNA.fullmatch(worker_id) if worker_id else None
    return int(match[1]) if match else None
