"""Batches on the training device, made ahead of the step by a background thread.

:class:`DevicePrefetcher` runs a ``stage`` (default: every tensor copied without blocking) on the
host batches ``depth`` batches ahead of the consumer, so that the training loop's thread never
waits on the loader's queue, never copies a batch out of the loader's shared ring, and never issues
a host-to-device copy between two steps.

On CUDA the stage runs on a side stream: the copies (and nvJPEG decoding) overlap the previous
step's kernels. The consumer's stream waits on an event recorded after each batch's stage (on the
device, not the host), and every tensor is marked as used by it (``Tensor.record_stream``), so the
caching allocator does not hand its memory to the side stream before the step that reads it ran.

Errors in the loader or the stage are raised from the consumer's ``next``; stopping early stops
the thread and lets the loader shut its workers down. A thread, not a process: the work is copies
and kernel launches, which release the GIL, and a process could not share the CUDA streams.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator

import torch

from alexnet.speed import to_device

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def copy_to(batch, device: torch.device):
    """Every tensor of ``batch`` (a tuple or list) on ``device`` by :func:`alexnet.speed.to_device`
    (without blocking the host when the source is pinned); anything else as it is."""
    return type(batch)(to_device(t, device) if isinstance(t, torch.Tensor) else t for t in batch)


def _tensors(batch) -> Iterator[torch.Tensor]:
    for t in batch:
        if isinstance(t, torch.Tensor):
            yield t
        elif isinstance(t, (tuple, list)):
            yield from _tensors(t)


class DevicePrefetcher:
    """Iterate ``batches`` with ``stage(batch)`` applied ``depth`` batches ahead in a thread.

    ``batches`` is iterated with ``iter()`` in the calling thread (so that a DataLoader starts its
    workers from here, not from the thread), then read only by the thread. Iterate the prefetcher
    once.
    """

    def __init__(self, batches: Iterable, device: torch.device | str, depth: int = 2,
                 stage: Callable | None = None):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # the thread must name the device
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.stage = stage or (lambda batch: copy_to(batch, self.device))
        self._source = iter(batches)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if cuda else None
        self._thread = threading.Thread(target=self._work, name="alexnet-prefetch", daemon=True)
        self._started = False

    def _put(self, item) -> bool:
        """Hand ``item`` to the consumer; False when the consumer has gone."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
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
                self._put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failure(err))
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
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
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
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
