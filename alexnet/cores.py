"""The cores this process may run on, behind every "one per core" default; imports nothing heavy."""

import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where that is unknown)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
