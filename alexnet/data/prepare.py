"""`alexnet prepare SOURCE OUT`: turn raw images into a prepared dataset, once (paper section 2).

Like the paper, which stored ImageNet at 256x256, every image is decoded once, its shorter side
rescaled to 256 and its central 256x256 patch kept; training then never touches the original
JPEGs again. In the same pass the training set's mean image (section 2) and the 3x3 covariance of
its RGB pixels, whose eigenvectors drive the PCA colour augmentation (section 4.1), are
accumulated exactly in integers.

OUT holds ``meta.json``, ``mean.npy``, ``<split>/shard-NNNNNN.tar`` (WebDataset layout) and beside
the shards ``<split>/index.npy`` (shard, byte offset, byte size of each sample) and
``<split>/labels.npy``. Work in progress lives in ``OUT/.partial`` (per finished shard: its index
and statistics), so that a killed run resumes without redoing finished shards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
from tqdm import tqdm

from alexnet.data.images import ENCODINGS, BadImage, center_patch, encode, open_image
from alexnet.data.shards import shard_name, write_atomically, write_shard
from alexnet.data.sources import Source, open_source, read_item
from alexnet.errors import UserError

FORMAT_VERSION = 1
SHARD_SIZE = 1000  # images per shard: ~25 MB of JPEG at 256x256, quality 90
CHUNK = 32  # images per task handed to a worker process
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="SOURCE",
                        help="an image folder (train/<class>/..., val/<class>/...), the folder holding "
                        "the ILSVRC-2012 tars and devkit (or their extracted forms, or Kaggle's layout), "
                        "a .tar.gz of one of these, or a name: imagenette, cifar10 (downloaded)")
    parser.add_argument("out", metavar="OUT", help="folder to write the prepared dataset to")
    parser.add_argument("--size", type=int, default=256,
                        help="side of the stored square images (default: 256, as the paper)")
    parser.add_argument("--format", dest="encoding", choices=sorted(ENCODINGS), default="jpeg",
                        help="how images are stored: jpeg (default) or raw uint8 arrays (.npy)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default: 90)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: all cores)")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE,
                        help=f"images per shard (default: {SHARD_SIZE})")
    parser.add_argument("--stats-sample", type=int, default=None, metavar="N",
                        help="estimate the mean image and the PCA from N random training images "
                        "(default: exact, over all of them)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first bad file instead of skipping and listing it")
    parser.add_argument("--cache-dir", default=None,
                        help="where named datasets are downloaded (default: $ALEXNET_CACHE or ~/.cache/alexnet)")


def run(args) -> int:
    prepare(args.source, args.out, size=args.size, encoding=args.encoding, quality=args.quality,
            workers=args.workers, shard_size=args.shard_size, stats_sample=args.stats_sample,
            strict=args.strict, cache_dir=args.cache_dir)
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
    raise UserError(f"--data {data}: not a prepared dataset (no meta.json there) nor a known name "
                    f"({', '.join(download.DATASETS)}); make one with `alexnet prepare SOURCE OUT`")


def prepare(source, out, *, size: int = 256, encoding: str = "jpeg", quality: int = 90,
            workers: int | None = None, shard_size: int = SHARD_SIZE, stats_sample: int | None = None,
            strict: bool = False, cache_dir=None, progress: bool = True) -> Path:
    """Prepare ``source`` into ``out`` (see the module docstring); returns ``out``.

    Safe to interrupt at any moment and to run again: finished shards are kept, and on a finished
    ``out`` nothing changes.
    """
    out = Path(out)
    if encoding not in ENCODINGS:
        raise UserError(f"--format {encoding}: expected one of {', '.join(sorted(ENCODINGS))}")
    if size < 1 or shard_size < 1 or not 1 <= quality <= 100:
        raise UserError("--size and --shard-size must be positive and --quality between 1 and 100")
    options = {"size": size, "encoding": encoding, "quality": quality if encoding == "jpeg" else None,
               "shard_size": shard_size, "stats_sample": stats_sample}
    if _finished(out, str(source), options):
        return out
    partial = out / ".partial"
    partial.mkdir(parents=True, exist_ok=True)
    with _only_writer(partial / "lock"):
        _check_same_job(partial / "options.json", {"source": str(source), **options})
        src = _open(source, partial, cache_dir)
        if not src.splits.get("train"):
            raise UserError(f"SOURCE {source}: found no training images")
        plan = {split: [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
                for split, items in src.splits.items() if items}
        in_stats = _stats_selection(len(src.splits["train"]), stats_sample)
        _write_shards(out, plan, in_stats, options, strict, workers or len(os.sched_getaffinity(0)), progress)
        _finish(out, src, plan, options, str(source))
    return out


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
    """Whether ``out`` already holds this prepared dataset (said on screen); an error if made otherwise."""
    meta_file = out / "meta.json"
    if not meta_file.is_file():
        return False
    meta = json.loads(meta_file.read_text())
    if meta.get("options") != options or meta["source"]["given"] != source:
        raise UserError(f"{out} already holds a dataset prepared from {meta['source']['given']} with other "
                        f"options or from another source ({meta.get('options')}); choose another OUT or delete it")
    shutil.rmtree(out / ".partial", ignore_errors=True)
    counts = ", ".join(f"{s['samples']} {name}" for name, s in meta["splits"].items())
    print(f"{out} is already prepared ({counts} images); nothing to do")
    return True


def _check_same_job(path: Path, job: dict) -> None:
    """A resumed run must be the same job as the interrupted one, or its shards would not fit together."""
    if path.is_file():
        before = json.loads(path.read_text())
        if before != job:
            raise UserError(f"{path.parent.parent} holds an unfinished run of another job ({before}); "
                            "run that same command again to finish it, or delete the folder")
    else:
        write_atomically(path, lambda f: f.write(json.dumps(job).encode()))


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
                    task = (chunk, list(counted), options["size"], options["encoding"], options["quality"])
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
    bar = tqdm(total=total, initial=done_images, unit="img", desc="prepare", disable=not progress, smoothing=0.05)
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
        positions = write_shard(out / split / shard_name(number), self.records, extension)
        arrays = {
            "positions": np.array(positions, np.int64).reshape(-1, 2),
            "labels": np.array([r[1] for r in self.records], np.int64),
            "sum_image": self.sum_image, "products": self.products,
            "count": np.int64(self.count), "skipped": np.array(json.dumps(self.skipped)),
        }
        write_atomically(_partial_file(out, split, number), lambda f: np.savez(f, **arrays))


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
    items, in_stats, size, encoding, quality = task
    records, skipped = [], []
    sum_image = np.zeros((size, size, 3), np.uint16)
    products = np.zeros((3, 3), np.float64)  # sums of integer products < 2**53: exact in float64
    count = 0
    for (key, label, locator, shown), counted in zip(items, in_stats):
        if label < 0:
            skipped.append((shown, "its class has no training images"))
            continue
        try:
            patch = _patch(read_item(locator), size)
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


def _patch(data, size: int) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(data) if isinstance(data, np.ndarray) else open_image(data)
    return center_patch(image, size)


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


def _gather_split(out: Path, split: str, shards: list) -> tuple[dict, dict]:
    """Write the split's index and labels from its shards' partial files; its meta.json entry and
    its summed statistics."""
    positions, labels, shard_of, skipped = [], [], [], []
    totals = {"sum_image": 0, "products": 0, "count": 0}
    for number in range(len(shards)):
        with np.load(_partial_file(out, split, number)) as part:
            positions.append(part["positions"])
            labels.append(part["labels"])
            shard_of.append(np.full(len(part["labels"]), number, np.int64))
            skipped += [{"path": p, "reason": r} for p, r in json.loads(str(part["skipped"]))]
            totals = {name: totals[name] + part[name] for name in totals}
    index = np.column_stack([np.concatenate(shard_of), np.concatenate(positions)])
    _save_npy(out / split / "index.npy", index)
    _save_npy(out / split / "labels.npy", np.concatenate(labels))
    info = {"samples": len(index), "shards": [f"{split}/{shard_name(n)}" for n in range(len(shards))],
            "index": f"{split}/index.npy", "labels": f"{split}/labels.npy", "skipped": skipped}
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
    splits = {}
    for split, shards in plan.items():
        splits[split], totals = _gather_split(out, split, shards)
        if split in src.notes:
            splits[split]["note"] = src.notes[split]
        if split == "train":
            stats = _statistics(totals, options["size"], source)
            stats["exact"] = options["stats_sample"] is None or options["stats_sample"] >= len(src.splits["train"])
            _save_npy(out / "mean.npy", (totals["sum_image"] / totals["count"]).astype(np.float32))
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
    }
    write_atomically(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    shutil.rmtree(out / ".partial", ignore_errors=True)
    n_skipped = sum(len(s["skipped"]) for s in splits.values())
    counts = ", ".join(f"{s['samples']} {name}" for name, s in splits.items())
    skipped = f"; {n_skipped} files skipped (listed in meta.json)" if n_skipped else ""
    print(f"prepared {counts} images into {out}{skipped}")


def _save_npy(path: Path, array: np.ndarray) -> None:
    write_atomically(path, lambda f: np.save(f, array, allow_pickle=False))
