"""The parallel pass of `alexnet prepare`: worker processes decode, crop and encode the images; each shard is
written whole, then its index and exact pixel sums (sections 2, 4.1) in ``OUT/.partial``, where a run resumes."""

import contextlib
import errno
import itertools
import json
import multiprocessing
import os
import queue
import signal
import sys
import threading
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet import console
from alexnet.atomic import write_error
from alexnet.data.images import FILE_BYTES_PER_PIXEL, BadImage, centre_patch, encode, open_image
from alexnet.defaults import ENCODINGS, MAX_PIXELS
from alexnet.data.shards import BLOCK, DIGEST, file_digest, sample_checksum, shard_name, write_atomically, write_shard
from alexnet.data.sources import read_item
from alexnet.errors import UserError

CHUNK = 32  # images per task handed to a worker process
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def partial_file(out: Path, split: str, number: int) -> Path:
    return out / ".partial" / f"{split}-{number:06d}.npz"


def write_shards(out, plan, in_stats, options, strict, workers, progress) -> None:
    """Write the shards of ``plan`` not done yet, their chunks prepared by ``workers`` processes."""
    tasks, done_images = [], 0  # the chunks to do: (split, shard, last chunk?, worker task)
    for split, shards in plan.items():
        (out / split).mkdir(exist_ok=True)
        for number, items in enumerate(shards):
            # done only once both the shard and its statistics were renamed into place
            if (out / split / shard_name(number)).is_file() and partial_file(out, split, number).is_file():
                done_images += len(items)
            else:
                for start in range(0, len(items), CHUNK):
                    chunk = items[start:start + CHUNK]
                    first = number * options["shard_size"] + start  # the chunk's position in the split
                    counted = in_stats[first:][:len(chunk)] if split == "train" else [False] * len(chunk)
                    task = (chunk, list(counted), options["size"], options["encoding"], options["quality"],
                            options.get("max_pixels", MAX_PIXELS))
                    tasks.append((split, number, start + CHUNK >= len(items), task))
    total = sum(len(items) for shards in plan.values() for items in shards)
    if not tasks:
        return
    if done_images:
        print(f"resuming: {done_images} of {total} images already prepared")
    with console.progress(total=total, initial=done_images, unit="img", desc="prepare", disable=not progress,
                          smoothing=0.05) as bar:
        try:
            with prepared_chunks([t[3] for t in tasks], min(workers, len(tasks))) as results:
                shard = []
                for (split, number, last, _), result in zip(tasks, results):
                    for shown, reason in result[-1]:
                        if strict:
                            raise UserError(f"{shown}: {reason} (--strict stops at the first bad file)")
                        bar.write(f"skipped {shown}: {reason}")
                    shard.append(result)
                    bar.update(len(result[0]) + len(result[-1]))
                    if last:
                        save_shard(out, split, number, ENCODINGS[options["encoding"]], shard)
                        shard = []
        except KeyboardInterrupt:
            bar.write("stopped; run the same command again to resume (finished shards are kept)")
            raise


@contextlib.contextmanager
def prepared_chunks(tasks: list, workers: int):
    """``prepare_chunk`` of each task, in order, computed by ``workers`` processes (0: in this one). Unlike a
    ``multiprocessing.Pool``, which waits forever for a dead worker's chunk, a worker that dies ends the run at
    once with one line saying how. The workers end with the run and with this process (their pipes' other end)."""
    if workers == 0:
        yield map(prepare_chunk, tasks)
        return
    started = _start_workers(workers)
    received = queue.SimpleQueue()
    exchange = threading.Thread(target=_exchange, args=(enumerate(tasks), len(tasks), started, received),
                                daemon=True)
    exchange.start()
    try:
        yield _in_order(len(tasks), received)
    finally:
        for process, _ in started:
            process.terminate()
        exchange.join()  # it ends once it has received everything or seen a worker end
        for process, pipe in started:
            process.join()
            pipe.close()


def _in_order(count: int, received: queue.SimpleQueue):
    done = {}
    for wanted in range(count):
        while wanted not in done:
            number, result = received.get()
            if isinstance(result, BaseException):  # a worker's UserError, a worker's death, or a fault of _exchange
                raise result
            done[number] = result
        yield done.pop(wanted)


def _exchange(tasks, count: int, started: list, received: queue.SimpleQueue) -> None:
    """In a thread, so that workers go on while shards are written: give each worker two tasks at a time (it never
    waits for the next), pass on what they send until all ``count`` came back or a worker ended (then how)."""
    def give(pipe) -> None:
        with contextlib.suppress(OSError):  # it died: its sentinel says how
            for number_task in itertools.islice(tasks, 1):
                pipe.send(number_task)

    try:
        of_pipe = {pipe: process for process, pipe in started}
        of_sentinel = {process.sentinel: process for process, _ in started}
        for pipe in [*of_pipe, *of_pipe]:
            give(pipe)
        while count:
            for ready in wait([*of_pipe, *of_sentinel]):
                try:
                    if ready in of_sentinel:
                        raise EOFError
                    received.put(ready.recv())
                except (EOFError, OSError):  # it ended (a reset: with tasks it had not read)
                    process = of_sentinel.get(ready) or of_pipe[ready]
                    process.join()
                    received.put((None, UserError(_death(process))))
                    return
                count -= 1
                give(ready)
    except BaseException as err:  # the main thread waits on `received`: never leave it waiting
        received.put((None, err))


def _death(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
        hint = " (with fewer --workers or a smaller --max-pixels if memory ran out: the system then kills one)"
    else:
        how, hint = f"exited with status {code} (its error, if any, is printed above)", ""
    return f"a worker process {how}; finished shards are kept: run the same command again{hint}"


def _start_workers(count: int) -> list:
    """``count`` worker processes with their pipes, forked from a clean fork server (no threads, this module
    imported once) that inherits single-threaded BLAS (one busy process per core) and this process's import
    path (else it would put the current folder first, where a clone's parent sees its ``alexnet``)."""
    saved = {name: os.environ.get(name) for name in (*THREAD_VARIABLES, "PYTHONPATH", "PYTHONSAFEPATH")}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"), PYTHONSAFEPATH="1",
                      PYTHONPATH=os.pathsep.join(os.path.abspath(p) for p in sys.path if isinstance(p, str)))
    # Started with Ctrl-C ignored, the server and its children leave Ctrl-C to this process.
    in_main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    started = []
    try:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        for _ in range(count):
            pipe, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            started.append((process, pipe))
        return started
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, handler)
        os.environ.update({name: value for name, value in saved.items() if value is not None})
        for name in [name for name, value in saved.items() if value is None]:
            del os.environ[name]


def _serve(pipe) -> None:
    """A worker: prepare each chunk it is sent and send back the result, until the main process ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the main process handles it
    with contextlib.suppress(EOFError, ConnectionError):
        while True:
            number, task = pipe.recv()
            try:
                result = prepare_chunk(task)
            except UserError as err:  # a source file that changed since it was listed: the main process says so
                result = err
            pipe.send((number, result))


def save_shard(out: Path, split: str, number: int, extension: str, results: list) -> None:
    """Write the shard of these :func:`prepare_chunk` results, then its index and summed statistics."""
    path = out / split / shard_name(number)
    records = [record for result in results for record in result[0]]
    with space_for(path, sum(len(r[2]) + 2 * BLOCK + 512 for r in records)):  # data, headers, .cls
        positions = write_shard(path, records, extension)
    arrays = {"positions": np.array(positions, np.int64).reshape(-1, 2),
              "labels": np.array([r[1] for r in records], np.int64),
              "crc32": np.array([sample_checksum(r[2]) for r in records], np.uint32),
              "digest": np.array(file_digest(path, DIGEST)),  # of the file just written: in the page cache
              "sum_image": sum(r[1].astype(np.int64) for r in results), "products": sum(r[2] for r in results),
              "count": np.int64(sum(r[3] for r in results)),
              "skipped": np.array(json.dumps([s for r in results for s in r[4]]))}
    partial = partial_file(out, split, number)
    with space_for(partial, sum(a.nbytes for a in arrays.values())):
        write_atomically(partial, lambda f: np.savez(f, **arrays))


@contextlib.contextmanager
def space_for(path: Path, needed: int):
    """A full disk while writing ``path`` (about ``needed`` bytes) is one message naming both."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise write_error(path, err, needed, "free some space and run the same command again: finished shards "
                          "are kept") from None


def prepare_chunk(task):
    """In a worker: decode, crop and encode a chunk of images, and sum their pixel statistics. Returns ``(records,
    sum_image, products, count, skipped)``: ``records`` are ``(key, label, encoded)``; ``sum_image`` (uint16: CHUNK
    <= 257 images of 255) and ``products`` (3x3 sums of R,G,B products) sum the images chosen for statistics,
    exactly; ``skipped`` is ``[(file, reason)]``."""
    items, in_stats, size, encoding, quality, max_pixels = task
    records, skipped, count = [], [], 0
    sum_image = np.zeros((size, size, 3), np.uint16)
    products = np.zeros((3, 3), np.float64)  # sums of integer products < 2**53: exact in float64
    for (key, label, locator, shown), counted in zip(items, in_stats):
        if label < 0:
            skipped.append((shown, "its class has no training images"))
            continue
        try:
            data = read_item(locator, FILE_BYTES_PER_PIXEL * max_pixels)
            image = Image.fromarray(data) if isinstance(data, np.ndarray) else open_image(data)
            patch = centre_patch(image, size, max_pixels)
        except (BadImage, OSError) as err:
            skipped.append((shown, f"unreadable file: {err}" if isinstance(err, OSError) else str(err)))
            continue
        records.append((key, label, encode(patch, encoding, quality)))
        if counted:
            sum_image += patch
            planes = patch.reshape(-1, 3).T.astype(np.float64)
            for i, j in itertools.combinations_with_replacement(range(3), 2):  # far cheaper than a 65536x3 matmul
                products[i, j] += planes[i] @ planes[j]
            count += 1
    products += np.triu(products, 1).T  # the lower triangle mirrors the upper one
    return records, sum_image, np.rint(products).astype(np.int64), count, skipped

