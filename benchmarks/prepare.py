"""Speed of `alexnet prepare` on real ImageNet JPEGs, against a plain PIL loop in the same run.

Usage: PYTHONPATH=. python benchmarks/prepare.py [IMAGES_DIR] [--workers N]

IMAGES_DIR (default ../shared/data/imagenet-samples) holds ``<wnid>_<name>.JPEG`` files. They are
linked into an image-folder tree (every image --repeat times in train/<wnid>/, every tenth also
in val/<wnid>/) and prepared with the default options: wall-clock images/s of the whole command. Per core: the
work one worker process does (read, decode, crop, encode, statistics: ``prepare_chunk``) timed
in CPU-seconds on every source image, the figure the issue sets at >= 250 images/s. The baseline
does the same work the obvious way, in one process: full-size decode, resize of the whole image,
crop, JPEG encode, and the statistics with numpy.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: the baseline computes on one core

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from alexnet.defaults import MAX_PIXELS  # noqa: E402
from alexnet.data.prepare import prepare  # noqa: E402
from alexnet.data.prepare_shards import CHUNK, prepare_chunk  # noqa: E402
from alexnet.data.sources import open_source  # noqa: E402


def link_tree(images: list[Path], root: Path, repeat: int) -> int:
    """Link each image ``repeat`` times into train/<wnid>/ and every tenth once into val/<wnid>/."""
    count = 0
    for i, image in enumerate(images):
        wnid = image.name.split("_", 1)[0]
        links = [("train", f"{k}_{image.name}") for k in range(repeat)] + ([("val", image.name)] if i % 10 == 0 else [])
        for split, name in links:
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            (root / split / wnid / name).symlink_to(image.resolve())
            count += 1
    return count


def plain_pil(images: list[Path], size: int = 256) -> float:
    """Images per CPU-second of the obvious loop (no draft mode, whole-image resize)."""
    start = time.process_time()
    total = np.zeros((size, size, 3))
    for path in images:
        image = Image.open(path).convert("RGB")
        scale = size / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        patch = np.asarray(image.crop((left, top, left + size, top + size)))
        Image.fromarray(patch).save(io.BytesIO(), "JPEG", quality=90)
        total += patch
        pixels = patch.reshape(-1, 3).astype(np.float64)
        pixels.T @ pixels
    return len(images) / (time.process_time() - start)


def worker_rate(source: Path) -> float:
    """Images per CPU-second of a worker's work, done here in one process over every training image."""
    items = open_source(source, source.parent / "scratch").splits["train"]
    start = time.process_time()
    for i in range(0, len(items), CHUNK):
        chunk = items[i:i + CHUNK]
        prepare_chunk((chunk, [True] * len(chunk), 256, "jpeg", 90, MAX_PIXELS))
    return len(items) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    samples = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
    parser.add_argument("images", nargs="?", default=samples)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=3,
                        help="times each image enters the training split (amortises worker start-up)")
    args = parser.parse_args()
    images = sorted(Path(args.images).glob("*.JPEG"))
    with tempfile.TemporaryDirectory() as tmp:
        count = link_tree(images, Path(tmp) / "src", args.repeat)
        wall = time.perf_counter()
        prepare(Path(tmp) / "src", Path(tmp) / "out", workers=args.workers, progress=False)
        wall = time.perf_counter() - wall
        load = os.getloadavg()[0]
        ours = worker_rate(Path(tmp) / "src")
    baseline = plain_pil(images)
    print(f"alexnet prepare: {count} images, {args.workers} workers: {count / wall:.0f} images/s wall-clock "
          f"(load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"per core: {ours:.0f} images per CPU-second (a worker's work, one process)")
    print(f"plain PIL loop: {baseline:.0f} images per CPU-second; ratio per core: {ours / baseline:.2f}x")


if __name__ == "__main__":
    main()
