"""What long commands show on standard error while they work, the same for every command.

On a terminal, a tqdm bar. In a log (standard error not a terminal: a file, a pipe, a batch
job), a bar's carriage-return frames are noise and a hidden bar is silence, so instead a plain
line every ``LOG_SECONDS``: done/total, percent, rate, time left and the latest readings
(``set_postfix``), and a last line when the work ends.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

LOG_SECONDS = 30.0  # in a log, at most one progress line this often
LOG_UPDATES: int | None = None  # when set, a line every this many updates instead (tests: no clock)


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
             leave: bool = True, disable: bool = False, stream=None, **tqdm_options):
    """A tqdm bar on a terminal, else :class:`LogLines`; both take ``update(n)``,
    ``set_postfix(**readings)``, ``close()``, ``with`` and iteration over ``iterable``.
    ``stream``: default standard error; ``tqdm_options`` go to the bar (e.g. ``smoothing``), and
    ``unit_scale`` also to the lines (bytes as 12.3M); without it counts are whole numbers."""
    stream = sys.stderr if stream is None else stream
    if total is None and iterable is not None:
        try:
            total = len(iterable)
        except TypeError:  # an iterator: counts without a total
            pass
    if getattr(stream, "isatty", None) and stream.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=disable,
                    dynamic_ncols=True, file=stream, **tqdm_options)
    return LogLines(iterable, total, desc, unit, initial, leave, disable, stream,
                    scaled=bool(tqdm_options.get("unit_scale")))


class LogLines:
    """Progress as plain lines, for logs: see the module docstring."""

    def __init__(self, iterable, total, desc, unit, initial, leave, disable, stream, scaled=False):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.initial = self.shown = initial
        self.leave, self.disable, self.stream, self.scaled = leave, disable, stream, scaled
        self.postfix: dict = {}
        self.updates = 0
        self.started = self.last_line = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        self.updates += 1
        now = time.monotonic()
        due = self.updates % LOG_UPDATES == 0 if LOG_UPDATES else now - self.last_line >= LOG_SECONDS
        if due:
            self._write(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **readings) -> None:
        self.postfix = {**(ordered_dict or {}), **readings}

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
