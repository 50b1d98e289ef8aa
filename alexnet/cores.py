"""How many cores this process may run on: the one count behind every "one per core" default
(loader workers, `alexnet prepare`'s workers, intra-op threads). Imports nothing heavy, so that
`alexnet prepare`'s worker processes stay light."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where that is unknown)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
