"""Stop requests: SIGINT and SIGTERM (a cluster's pre-emption) end a run after its current step,
with a checkpoint to resume from (docs/training.md)."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves and exits. A second SIGINT
    interrupts at once (the last checkpoint stays). Signals reach only the main thread: elsewhere
    (a notebook's worker thread) nothing is installed."""

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
