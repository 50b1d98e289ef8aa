"""`alexnet prepare SOURCE OUT`: turn raw images into a prepared dataset, once (paper section 2).

Like the paper, which stored ImageNet at 256x256, every image is decoded once, its shorter side
rescaled to 256 and its central 256x256 patch kept; training then never touches the original
JPEGs again. In the same pass the training set's mean image (section 2) and the 3x3 covariance of
its RGB pixels, whose eigenvectors drive the PCA colour augmentation (section 4.1), are
accumulated exactly in integers.

OUT holds ``meta.json``, ``mean.npy``, ``<split>/shard-NNNNNN.tar`` (WebDataset layout) and beside
the shards ``<split>/index.npy`` (shard, byte offset, byte size of each sample),
``<split>/labels.npy`` and ``<split>/crc32.npy`` (each sample's checksum, checked on every read);
``meta.json`` also records the SHA-256 of every other file, which ``alexnet prepare --verify OUT``
checks. Work in progress lives in ``OUT/.partial`` (per finished shard: its index and statistics),
so that a killed run resumes without redoing finished shards.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from alexnet import console
from alexnet.data.images import (ENCODINGS, FILE_BYTES_PER_PIXEL, MAX_PIXELS, BadImage, center_patch, encode,
                                 open_image)
from alexnet.data.dataset import prepare_again, read_meta
from alexnet.data.shards import BLOCK, file_digest, sample_checksum, shard_name, write_atomically, write_shard
from alexnet.data.sources import Source, open_source, read_item
from alexnet.errors import UserError

FORMAT_VERSION = 2  # 2: checksums (crc32.npy per split, SHA-256 of each file in meta.json)
DIGEST = "sha256"
SHARD_SIZE = 1000  # images per shard: ~25 MB of JPEG at 256x256, quality 90
CHUNK = 32  # images per task handed to a worker process
# --size: at 1024 a shard's exact pixel sums take 25 MB; at 100000 they would take 224 GiB.
MIN_SIZE, MAX_SIZE = 8, 1024
HOLD_OUT = 20  # a source without validation images: 1 in 20 of each class's training images become them
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run(args) -> int:
    if args.verify is not None:
        if args.source is not None:
            raise UserError("--verify OUT takes no SOURCE: `alexnet prepare --verify OUT`")
        return verify_command(args.verify)
    if args.out is None:
        raise UserError("expected SOURCE and OUT: `alexnet prepare SOURCE OUT` "
                        "(or `alexnet prepare --verify OUT`)")
    prepare(args.source, args.out, size=args.size, encoding=args.encoding, quality=args.quality,
            workers=args.workers, shard_size=args.shard_size, stats_sample=args.stats_sample,
            strict=args.strict, cache_dir=args.cache_dir, restart=args.restart, max_pixels=args.max_pixels)
    return 0


def ensure_prepared(data, cache_dir=None) -> Path:
    """A prepared dataset folder for ``data``: the folder itself, or a named dataset prepared on first use.

    Names (``imagenette``, ``cifar10``) are downloaded and prepared into the cache
    (``cache_dir``, else ``$ALEXNET_CACHE``, else ``~/.cache/alexnet``).
    """
    path = Path(data)
    if (path / "meta.json").is_file():
        return path
    from alexnet.data import download

    if str(data) in download.DATASETS and not path.exists():
        out = download.cache_root(cache_dir) / str(data)
        return out if (out / "meta.json").is_file() else prepare(str(data), out, cache_dir=cache_dir)
    raise UserError(f"--data {data}: not a prepared dataset ({path / 'meta.json'} is missing) nor a known name "
                    f"({', '.join(download.DATASETS)}); make one with `alexnet prepare SOURCE OUT`, or run the "
                    "command that made it again if it was stopped")


def prepare(source, out, *, size: int = 256, encoding: str = "jpeg", quality: int = 90,
            workers: int | None = None, shard_size: int = SHARD_SIZE, stats_sample: int | None = None,
            strict: bool = False, cache_dir=None, progress: bool = True, restart: bool = False,
            max_pixels: int = MAX_PIXELS) -> Path:
    """Prepare ``source`` into ``out`` (see the module docstring); returns ``out``.

    Safe to interrupt at any moment and to run again: finished shards are kept, and on a finished
    ``out`` nothing changes. ``restart`` first discards whatever an earlier run left in ``out``.
    An image that would decode to more than ``max_pixels`` pixels is skipped (docs/data.md).
    """
    out = Path(out)
    if encoding not in ENCODINGS:
        raise UserError(f"--format {encoding}: expected one of {', '.join(sorted(ENCODINGS))}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"--size {size}: expected {MIN_SIZE} to {MAX_SIZE} pixels (the paper: 256)")
    if max_pixels < 1 or shard_size < 1 or not 1 <= quality <= 100:
        raise UserError("--max-pixels and --shard-size must be positive and --quality between 1 and 100")
    _check_out_outside(source, out)
    options = {"size": size, "encoding": encoding, "quality": quality if encoding == "jpeg" else None,
               "shard_size": shard_size, "stats_sample": stats_sample}
    if max_pixels != MAX_PIXELS:  # recorded only when changed: OUTs made before it existed stay the same job
        options["max_pixels"] = max_pixels
    if restart:
        _refuse_foreign(out)
    elif _finished(out, str(source), options):
        return out
    partial = out / ".partial"
    made_out = not out.exists()
    partial.mkdir(parents=True, exist_ok=True)
    with _only_writer(partial / "lock"):
        if restart:
            _clear_partial(out)
        job = {"source": str(source), **options, "version": FORMAT_VERSION}
        resuming = _claim(out, job)
        try:
            src = _open(source, partial, cache_dir)
            if not src.splits.get("train"):
                raise UserError(f"SOURCE {source}: found no training images")
        except BaseException:
            if not resuming:  # this job wrote nothing: leave no trace that would hold OUT
                _remove_partial(out, made_out)
            raise
        if restart:  # only now that the source opened: a mistyped SOURCE costs no dataset
            _discard_results(out)
        if not resuming:
            write_atomically(partial / "options.json", lambda f: f.write(json.dumps(job).encode()))
        hold_out_validation(src)
        plan = {split: [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
                for split, items in src.splits.items() if items}
        in_stats = _stats_selection(len(src.splits["train"]), stats_sample)
        _write_shards(out, plan, in_stats, options, strict, workers or len(os.sched_getaffinity(0)), progress)
        samples = sum(len(items) for items in src.splits.values())
        with _space_for(out, 40 * samples + 4 * 3 * size**2 + 2**20):  # index files, mean.npy, meta.json
            _finish(out, src, plan, options, str(source))
    return out


def _check_out_outside(source, out: Path) -> None:
    """OUT inside a SOURCE folder would be read as part of it on the next run (a class of shards)."""
    if not Path(source).is_dir():
        return  # an archive or a name
    inside, folder = out.resolve(), Path(source).resolve()
    if inside == folder or folder in inside.parents:
        raise UserError(f"OUT {out} is inside SOURCE {source}: it would be read as part of the source; "
                        "choose an OUT outside it")


@contextlib.contextmanager
def _only_writer(lock_file: Path):
    """Hold an exclusive lock on OUT for this run: two runs writing the same shards would spoil them."""
    with open(lock_file, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{lock_file.parent.parent} is being written by another `alexnet prepare`; "
                            "wait for it to finish") from None
        yield


def _finished(out: Path, source: str, options: dict) -> bool:
    """Whether ``out`` already holds this prepared dataset (said on screen); an error if made otherwise
    or if one of its files is missing."""
    if not (out / "meta.json").is_file():
        return False
    meta = read_meta(out)
    given = meta.get("source", {}).get("given")
    if meta.get("options") != options or given != source:
        raise UserError(f"{out} already holds a dataset prepared from {given} with other options or from "
                        f"another source ({meta.get('options')}); choose another OUT, or add --restart to "
                        "replace it")
    missing = [name for name in _listed_files(meta) if not (out / name).is_file()]
    if missing:
        raise UserError(f"{out / missing[0]} is missing ({len(missing)} files of {out} are); "
                        f"{prepare_again(out, meta)}")
    shutil.rmtree(out / ".partial", ignore_errors=True)
    counts = ", ".join(f"{s['samples']} {name}" for name, s in meta["splits"].items())
    print(f"{out} is already prepared ({counts} images); nothing to do")
    return True


def _claim(out: Path, job: dict) -> bool:
    """Whether this run resumes an unfinished run of the same ``job``; else ``out/.partial`` is
    cleared for it. A resumed run must be the same job as the interrupted one, or its shards would
    not fit together: another job's unfinished run that already wrote shards is an error (keep it or
    ``--restart``); one that wrote none is simply replaced."""
    partial = out / ".partial"
    try:
        before = json.loads((partial / "options.json").read_text())
    except (OSError, ValueError):
        before = None
    if before == job:
        return True
    if before is not None and list((out / ".partial").glob("*.npz")):
        raise UserError(f"{out} holds an unfinished run of another job ({before}); run that same command "
                        "again to finish it, or add --restart to discard it and start this one")
    # Nothing to resume: leftovers of a run that recorded no job (a source it could not open), or of
    # another job that finished no shard.
    _clear_partial(out)
    if before is not None:
        _discard_results(out)
    return False


def _clear_partial(out: Path) -> None:
    """Empty ``out/.partial`` but for the lock this run holds."""
    for entry in (out / ".partial").iterdir():
        if entry.name == "lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _discard_results(out: Path) -> None:
    """Remove what `alexnet prepare` writes in ``out`` outside ``.partial``, and nothing else."""
    for name in ("meta.json", "mean.npy"):
        for path in (out / name, out / f"{name}.tmp"):
            path.unlink(missing_ok=True)
    patterns = ("shard-*.tar", "shard-*.tar.tmp", "index.npy", "labels.npy", "crc32.npy", "*.npy.tmp")
    for folder in [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]:
        ours = [path for pattern in patterns for path in folder.glob(pattern)]
        for path in ours:
            path.unlink()
        if ours and not any(folder.iterdir()):
            folder.rmdir()


def _refuse_foreign(out: Path) -> None:
    """``--restart`` removes files by their names: not in a folder whose meta.json is another program's."""
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return  # none, or a prepared dataset's that is damaged
    if not isinstance(meta, dict) or meta.get("format") != "alexnet-prepared-dataset":
        raise UserError(f"{out / 'meta.json'} is not the meta.json of a prepared dataset: --restart removes "
                        f"nothing from {out}; choose another OUT")


def _remove_partial(out: Path, made_out: bool) -> None:
    """Remove ``out/.partial`` (lock included: a failed run holds nothing) and ``out`` if this run made it."""
    shutil.rmtree(out / ".partial", ignore_errors=True)
    if made_out and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _listed_files(meta: dict) -> list[str]:
    """The files of a finished prepared dataset, as named in its meta.json (relative to OUT)."""
    names = [meta.get("stats", {}).get("mean_image", "mean.npy")]
    for info in meta["splits"].values():
        names += info["shards"] + [info[key] for key in ("index", "labels", "crc32") if key in info]
    return names


def _open(source, partial: Path, cache_dir) -> Source:
    from alexnet.data import download  # only for named datasets: keeps worker start-up light

    name = str(source)
    if name in download.DATASETS and not Path(name).exists():
        source = download.fetch(name, cache_dir)
    return open_source(Path(source), partial)


def _stats_selection(n: int, sample: int | None) -> np.ndarray:
    """Which training images enter the mean and the PCA: all, or ``sample`` of them drawn at random (seed 0)."""
    if sample is None or sample >= n:
        return np.ones(n, dtype=bool)
    if sample < 1:
        raise UserError(f"--stats-sample {sample}: expected a positive number of images")
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(0).choice(n, size=sample, replace=False)] = True
    return chosen


def hold_out_validation(src: Source) -> None:
    """Give a source without validation images (an image folder with only ``train/``) a ``val``
    split: 1 in HOLD_OUT of each class's training images (rounded down: none of a class with fewer),
    drawn at random (seed 0); meta.json's note on the split says so."""
    items = src.splits["train"]
    if src.splits.get("val"):
        return
    labels = np.array([item[1] for item in items])
    held = np.zeros(len(items), dtype=bool)
    rng = np.random.default_rng(0)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held[rng.choice(members, size=len(members) // HOLD_OUT, replace=False)] = True
    if held.any():
        src.splits["val"] = [item for item, h in zip(items, held) if h]
        src.splits["train"] = [item for item, h in zip(items, held) if not h]
        src.notes["val"] = (f"held out from the training images, which the source alone has: 1 in {HOLD_OUT} "
                            "of each class, at random (seed 0)")


# ---------------------------------------------------------------- the parallel pass


def _partial_file(out: Path, split: str, number: int) -> Path:
    return out / ".partial" / f"{split}-{number:06d}.npz"


def _done(out: Path, split: str, number: int) -> bool:
    """A shard counts as done only once both it and its statistics were renamed into place."""
    return (out / split / shard_name(number)).is_file() and _partial_file(out, split, number).is_file()


def _tasks(out: Path, plan: dict, in_stats: np.ndarray, options: dict) -> tuple[list, int]:
    """The chunks of the shards still to do, as ``(split, shard, last chunk?, worker task)``, and
    the number of images in the shards already done."""
    tasks, done_images = [], 0
    for split, shards in plan.items():
        (out / split).mkdir(exist_ok=True)
        first = 0  # position of the shard's first item in the split
        for number, items in enumerate(shards):
            if _done(out, split, number):
                done_images += len(items)
            else:
                for start in range(0, len(items), CHUNK):
                    chunk = items[start:start + CHUNK]
                    counted = in_stats[first + start:][:len(chunk)] if split == "train" else [False] * len(chunk)
                    task = (chunk, list(counted), options["size"], options["encoding"], options["quality"],
                            options.get("max_pixels", MAX_PIXELS))
                    tasks.append((split, number, start + CHUNK >= len(items), task))
            first += len(items)
    return tasks, done_images


def _write_shards(out, plan, in_stats, options, strict, workers, progress) -> None:
    tasks, done_images = _tasks(out, plan, in_stats, options)
    total = sum(len(items) for shards in plan.values() for items in shards)
    if not tasks:
        return
    if done_images:
        print(f"resuming: {done_images} of {total} images already prepared")
    bar = console.progress(total=total, initial=done_images, unit="img", desc="prepare", disable=not progress,
                           smoothing=0.05)
    pool = _worker_pool(max(1, min(workers, len(tasks))))
    try:
        results = pool.imap(_prepare_chunk, [t[3] for t in tasks])
        shard = _ShardBuffer(options["size"])
        for (split, number, last, _), result in zip(tasks, results):
            for shown, reason in result[-1]:
                if strict:
                    raise UserError(f"{shown}: {reason} (--strict stops at the first bad file)")
                bar.write(f"skipped {shown}: {reason}")
            shard.add(result)
            bar.update(len(result[0]) + len(result[-1]))
            if last:
                shard.save(out, split, number, ENCODINGS[options["encoding"]])
                shard = _ShardBuffer(options["size"])
    except KeyboardInterrupt:
        bar.write("stopped; run the same command again to resume (finished shards are kept)")
        raise
    finally:
        bar.close()
        pool.terminate()
        pool.join()


def _worker_pool(workers: int):
    """``workers`` processes, each with single-threaded BLAS (one busy process per core; a
    multi-threaded BLAS in each of them would fight the others for the cores).

    They are forked from a fork server that started clean (no threads, this module imported
    once), so a pool costs milliseconds, and the server inherits the BLAS settings made here.
    """
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    # Started with Ctrl-C ignored, the server and its children leave Ctrl-C to this process.
    in_main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context.Pool(workers, initializer=_ignore_interrupts)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, handler)
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


class _ShardBuffer:
    """The prepared images and summed statistics of one shard, until it is written."""

    def __init__(self, size: int):
        self.records, self.skipped = [], []
        self.sum_image = np.zeros((size, size, 3), np.int64)
        self.products = np.zeros((3, 3), np.int64)
        self.count = 0

    def add(self, result) -> None:
        records, sum_image, products, count, skipped = result
        self.records += records
        self.skipped += skipped
        self.sum_image += sum_image
        self.products += products
        self.count += count

    def save(self, out: Path, split: str, number: int, extension: str) -> None:
        path = out / split / shard_name(number)
        with _space_for(path, sum(len(r[2]) + 2 * BLOCK + 512 for r in self.records)):  # data, headers, .cls
            positions = write_shard(path, self.records, extension)
        arrays = {
            "positions": np.array(positions, np.int64).reshape(-1, 2),
            "labels": np.array([r[1] for r in self.records], np.int64),
            "crc32": np.array([sample_checksum(r[2]) for r in self.records], np.uint32),
            "digest": np.array(file_digest(path, DIGEST)),  # of the file just written: still in the page cache
            "sum_image": self.sum_image, "products": self.products,
            "count": np.int64(self.count), "skipped": np.array(json.dumps(self.skipped)),
        }
        partial = _partial_file(out, split, number)
        with _space_for(partial, sum(a.nbytes for a in arrays.values())):
            write_atomically(partial, lambda f: np.savez(f, **arrays))


@contextlib.contextmanager
def _space_for(path: Path, needed: int):
    """A full disk while writing ``path`` (about ``needed`` bytes) is one message naming both."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise UserError(f"{path}: no space left on the device (writing it needs about {needed / 2**20:.1f} MiB); "
                        "free some space and run the same command again: finished shards are kept") from None


def _ignore_interrupts() -> None:
    """Ctrl-C reaches the whole process group: only the main process handles it (and stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prepare_chunk(task):
    """In a worker: decode, crop and encode a chunk of images, and sum their pixel statistics.

    Returns ``(records, sum_image, products, count, skipped)``: ``records`` are ``(key, label,
    encoded)``; ``sum_image`` (uint16: at most CHUNK <= 257 images of 255) and ``products`` (the
    3x3 sums of R,G,B products) cover the images chosen for statistics, exactly; ``skipped`` lists
    ``(file, reason)`` for each file that is not a usable image.
    """
    items, in_stats, size, encoding, quality, max_pixels = task
    records, skipped = [], []
    sum_image = np.zeros((size, size, 3), np.uint16)
    products = np.zeros((3, 3), np.float64)  # sums of integer products < 2**53: exact in float64
    count = 0
    for (key, label, locator, shown), counted in zip(items, in_stats):
        if label < 0:
            skipped.append((shown, "its class has no training images"))
            continue
        try:
            patch = _patch(read_item(locator, FILE_BYTES_PER_PIXEL * max_pixels), size, max_pixels)
        except BadImage as err:
            skipped.append((shown, str(err)))
            continue
        except OSError as err:
            skipped.append((shown, f"unreadable file: {err}"))
            continue
        records.append((key, label, encode(patch, encoding, quality)))
        if counted:
            sum_image += patch
            products += _pixel_products(patch)
            count += 1
    return records, sum_image, np.rint(products).astype(np.int64), count, skipped


def _pixel_products(patch: np.ndarray) -> np.ndarray:
    """The 3x3 sums over pixels of R*R, R*G, ... (six dot products: far cheaper than a 65536x3 matmul)."""
    planes = patch.reshape(-1, 3).T.astype(np.float64)
    products = np.empty((3, 3))
    for i in range(3):
        for j in range(i, 3):
            products[i, j] = products[j, i] = planes[i] @ planes[j]
    return products


def _patch(data, size: int, max_pixels: int) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(data) if isinstance(data, np.ndarray) else open_image(data)
    return center_patch(image, size, max_pixels)


# ---------------------------------------------------------------- verifying


def verify(out, progress: bool = False) -> list[str] | None:
    """Check every file of the prepared dataset ``out`` against the digest recorded in its meta.json:
    one line per missing or damaged file (``[]``: all whole), or None for a dataset prepared before
    checksums were recorded."""
    out = Path(out)
    meta = read_meta(out)
    checksums = meta.get("checksums")
    if not checksums:
        return None
    problems = []
    for name in console.progress(_listed_files(meta), unit="file", desc="verify", disable=not progress):
        path, expected = out / name, checksums["files"].get(name)
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif expected is None:
            problems.append(f"{path}: no checksum recorded for it in {out / 'meta.json'}")
        elif file_digest(path, checksums["algorithm"]) != expected:
            problems.append(f"{path}: damaged (its {checksums['algorithm']} differs from the one recorded "
                            "when it was prepared)")
    return problems


def verify_command(out) -> int:
    """``alexnet prepare --verify OUT``: the damaged files, one line each, and exit status 1; or a
    line saying all is whole."""
    problems = verify(out, progress=True)
    meta = read_meta(Path(out))
    shards = sum(len(info["shards"]) for info in meta["splits"].values())
    if problems is None:
        print(f"{out} has no checksums (prepared by a version that did not record them): nothing verified; "
              f"to have them, {prepare_again(out, meta)}")
        return 0
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} damaged or missing files in {out}; {prepare_again(out, meta)}", file=sys.stderr)
        return 1
    others = len(_listed_files(meta)) - shards
    print(f"all {shards} shards whole (and {others} index and mean files) in {out}")
    return 0


# ---------------------------------------------------------------- finishing


def pca(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (as columns) of a 3x3 RGB covariance (section 4.1).

    Each eigenvector's sign is fixed (positive sum) so that the same data always gives the same numbers.
    """
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    vectors *= np.where(vectors.sum(axis=0) < 0, -1.0, 1.0)
    return values, vectors


def _gather_split(out: Path, split: str, shards: list, digests: dict) -> tuple[dict, dict]:
    """Write the split's index, labels and checksums from its shards' partial files, and add each
    file's digest to ``digests``; its meta.json entry and its summed statistics."""
    positions, labels, crcs, shard_of, skipped = [], [], [], [], []
    totals = {"sum_image": 0, "products": 0, "count": 0}
    for number in range(len(shards)):
        with np.load(_partial_file(out, split, number)) as part:
            positions.append(part["positions"])
            labels.append(part["labels"])
            crcs.append(part["crc32"])
            digests[f"{split}/{shard_name(number)}"] = str(part["digest"])
            shard_of.append(np.full(len(part["labels"]), number, np.int64))
            skipped += [{"path": p, "reason": r} for p, r in json.loads(str(part["skipped"]))]
            totals = {name: totals[name] + part[name] for name in totals}
    index = np.column_stack([np.concatenate(shard_of), np.concatenate(positions)])
    info = {"samples": len(index), "shards": [f"{split}/{shard_name(n)}" for n in range(len(shards))],
            "index": f"{split}/index.npy", "labels": f"{split}/labels.npy", "crc32": f"{split}/crc32.npy",
            "skipped": skipped}
    for name, array in (("index", index), ("labels", np.concatenate(labels)), ("crc32", np.concatenate(crcs))):
        _save_npy(out, info[name], array, digests)
    return info, totals


def _statistics(totals: dict, size: int, source: str) -> dict:
    """Mean image (saved by the caller), mean colour and RGB PCA from the exact training sums."""
    count = int(totals["count"])
    if count == 0:
        raise UserError(f"SOURCE {source}: none of the training files is a usable image")
    pixels = count * size**2
    mean_rgb = totals["sum_image"].sum(axis=(0, 1)) / pixels
    covariance = totals["products"] / pixels - np.outer(mean_rgb, mean_rgb)
    eigvals, eigvecs = pca(covariance)
    return {"images": count, "scale": "0-255", "mean_image": "mean.npy", "mean_rgb": mean_rgb.tolist(),
            "pca_eigvals": eigvals.tolist(), "pca_eigvecs": eigvecs.tolist(),
            "pca_eigvecs_layout": "3x3, row = R,G,B component, column = eigenvector"}


def _finish(out: Path, src: Source, plan: dict, options: dict, source: str) -> None:
    """Gather the shards' indexes and statistics into index files, mean.npy and meta.json (written last)."""
    splits, digests = {}, {}
    for split, shards in plan.items():
        splits[split], totals = _gather_split(out, split, shards, digests)
        if split in src.notes:
            splits[split]["note"] = src.notes[split]
        if split == "train":
            stats = _statistics(totals, options["size"], source)
            stats["exact"] = options["stats_sample"] is None or options["stats_sample"] >= len(src.splits["train"])
            _save_npy(out, "mean.npy", (totals["sum_image"] / totals["count"]).astype(np.float32), digests)
    meta = {
        "format": "alexnet-prepared-dataset", "version": FORMAT_VERSION,
        "source": {"kind": src.kind, "given": source, "path": str(src.path)},
        "image": {"size": options["size"], "encoding": options["encoding"], "quality": options["quality"],
                  "extension": ENCODINGS[options["encoding"]],
                  "preprocessing": "RGB; shorter side rescaled to size (bilinear); central size x size patch"},
        "options": options,
        "classes": [{"index": i, "id": cid, "name": name} for i, (cid, name) in enumerate(src.classes)],
        "splits": splits,
        "stats": stats,
        "checksums": {"algorithm": DIGEST, "files": dict(sorted(digests.items()))},
    }
    write_atomically(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    shutil.rmtree(out / ".partial", ignore_errors=True)
    n_skipped = sum(len(s["skipped"]) for s in splits.values())
    counts = ", ".join(f"{s['samples']} {name}" for name, s in splits.items())
    skipped = f"; {n_skipped} files skipped (listed in meta.json)" if n_skipped else ""
    print(f"prepared {counts} images into {out}{skipped}")


def _save_npy(out: Path, name: str, array: np.ndarray, digests: dict) -> None:
    """Save ``array`` as ``out/name`` and record its digest in ``digests[name]``."""
    write_atomically(out / name, lambda f: np.save(f, array, allow_pickle=False))
    digests[name] = file_digest(out / name, DIGEST)
