"""Progress on stderr, for every command: a tqdm bar on a terminal; in a log, a line every ``LOG_SECONDS``."""

import contextlib
import sys
import time

from tqdm import tqdm

LOG_SECONDS = 30.0  # in a log, at most one progress line this often
LOG_UPDATES: int | None = None  # when set, a line every this many updates instead (tests: no clock)


def progress(iterable=None, *, stream=None, **options):
    """A tqdm bar (``options`` are tqdm's) on a terminal ``stream`` (default: sys.stderr), else :class:`LogLines`."""
    stream = sys.stderr if stream is None else stream
    if getattr(stream, "isatty", None) and stream.isatty():
        return tqdm(iterable, dynamic_ncols=True, file=stream, **options)
    return LogLines(iterable, stream, **options)


class LogLines(contextlib.AbstractContextManager):  # whose __enter__ returns self
    """Progress lines for logs, where a bar's frames are noise: done/total, percent, rate, time left, readings."""

    def __init__(self, iterable, stream, total=None, desc="", unit="it", initial=0, leave=True, disable=False,
                 unit_scale=False, **_):  # the bar's other options (smoothing) mean nothing in a log
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.iterable, self.stream, self.desc, self.unit = iterable, stream, desc, unit
        self.n = self.initial = self.shown = initial
        self.leave, self.disable, self.scaled = leave, disable, bool(unit_scale)
        self.postfix, self.updates = {}, 0
        self.started = self.last_line = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __exit__(self, *_) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        self.updates += 1
        now = time.monotonic()
        if self.updates % LOG_UPDATES == 0 if LOG_UPDATES else now - self.last_line >= LOG_SECONDS:
            self._write(now)

    def set_postfix(self, refresh: bool = True, **readings) -> None:
        self.postfix = readings

    def write(self, message: str) -> None:
        """A message between progress lines (tqdm's ``bar.write``)."""
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.leave and self.n != self.shown:
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        self.last_line, self.shown = now, self.n
        if self.disable:
            return
        size = tqdm.format_sizeof if self.scaled else str  # bytes as 12.3M, as the bar shows them
        rate = (self.n - self.initial) / max(now - self.started, 1e-9)
        parts = [f"{self.desc}: {size(self.n)}/{size(self.total)} {self.unit} ({100 * self.n / self.total:.0f}%)"
                 if self.total else f"{self.desc}: {size(self.n)} {self.unit}",
                 f"{size(rate) if self.scaled else f'{rate:.1f}'} {self.unit}/s"]
        if self.total and self.n < self.total and rate > 0:
            parts.append(f"{tqdm.format_interval((self.total - self.n) / rate)} left")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        print(", ".join(parts), file=self.stream, flush=True)


def plural(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
