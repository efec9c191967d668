"""How the core names things in its sentences: ages, limits, processes. No I/O, no Rich."""

from __future__ import annotations

import math
from collections.abc import Collection

from .model import Holder


def human_age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def limit(seconds: float) -> str:
    """A threshold as given: `30s`, or `inf` for "never by age"."""
    return "inf" if math.isinf(seconds) else f"{seconds:g}s"


def processes(holders: Collection[Holder]) -> str:
    """`4242 (python), 4243 (python)`: how every message names processes."""
    return ", ".join(f"{h.pid} ({h.name})" for h in holders)
