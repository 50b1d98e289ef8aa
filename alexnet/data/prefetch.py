"""Batches on the training device, made ahead of the step by a background thread (copies and
kernel launches release the GIL): :class:`DevicePrefetcher`. On CUDA the stage runs on a side stream;
the consumer's stream waits on an event recorded after it, and each tensor is marked used there
(``record_stream``) so the allocator does not reuse it too early.
"""

import os
import queue
import threading
import time
from contextlib import suppress
from typing import Callable, Iterable, Iterator

import torch

from alexnet.speed import to_device


def copy_to(batch, device: torch.device):
    """Every tensor of ``batch`` (a tuple or list) on ``device`` (:func:`alexnet.speed.to_device`)."""
    return type(batch)(to_device(t, device) if isinstance(t, torch.Tensor) else t for t in batch)


def _tensors(batch) -> Iterator[torch.Tensor]:
    for t in batch:
        if isinstance(t, torch.Tensor):
            yield t
        elif isinstance(t, (tuple, list)):
            yield from _tensors(t)


def join_ended(threads, timeout: float = 5.0) -> None:
    """Join ``threads`` and wait (at most ``timeout`` seconds) until the kernel has ended them too.

    A thread still ending in CPython before 3.12 can hold a lock that a child forked then waits on
    forever (CPython gh-112275): the next loader's workers hung at the start of validation. A joined
    thread has left Python but not yet the kernel: on Linux its task is gone from /proc/self/task."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    ids = {str(t.native_id) for t in threads if t.native_id is not None and not t.is_alive()}
    while ids and time.monotonic() < deadline:
        try:
            ids &= set(os.listdir("/proc/self/task"))
        except OSError:  # not Linux: nothing more to wait for
            return
        if ids:
            time.sleep(0.001)


class DevicePrefetcher:
    """Iterate ``batches`` once with ``stage(batch)`` (default: tensors copied without blocking) applied
    ``depth`` ahead in a thread, whose errors ``next`` raises; ``iter(batches)`` runs in the caller's thread."""

    def __init__(self, batches: Iterable, device: torch.device | str, depth: int = 2, stage: Callable | None = None):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:  # the thread must name the device
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.stage = stage or (lambda batch: copy_to(batch, self.device))
        self._source = iter(batches)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._thread = threading.Thread(target=self._work, name="alexnet-prefetch", daemon=True)
        self._started = False

    def _put(self, item) -> bool:
        """Hand ``item`` to the consumer; False when the consumer has gone."""
        while not self._stop.is_set():
            with suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return True
        return False

    def _work(self) -> None:
        try:
            if self._stream is not None:
                torch.cuda.set_device(self.device)
            for batch in self._source:
                if self._stop.is_set():
                    break
                if self._stream is None:
                    item = (self.stage(batch), None)
                else:
                    with torch.cuda.stream(self._stream):
                        staged = self.stage(batch)
                        ready = torch.cuda.Event()
                        ready.record(self._stream)
                    item = (staged, ready)
                if not self._put(item):
                    break
            else:
                self._put(None)  # the end
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(err)
        finally:
            self._source = None  # the loader's iterator goes: its workers shut down

    def __iter__(self):
        if self._started:
            raise RuntimeError("a DevicePrefetcher is iterated once; make a new one per epoch")
        self._started = True
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):  # else a (batch, event) pair
                    raise item
                batch, ready = item
                if ready is not None:
                    consumer = torch.cuda.current_stream(self.device)
                    consumer.wait_event(ready)
                    for t in _tensors(batch):
                        if t.device.type == "cuda":
                            t.record_stream(consumer)
                yield batch
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread (it finishes the batch it is staging) and drop what it made."""
        self._stop.set()
        with suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join()
            join_ended([self._thread])
