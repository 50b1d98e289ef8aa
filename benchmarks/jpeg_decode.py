"""Decoding the stored 256x256 JPEGs on one core: simplejpeg (what the loader uses) against
Pillow (what it used before, and the usual way), on the same samples in the same run.

    PYTHONPATH=. python benchmarks/jpeg_decode.py PREPARED [--images 500] [--rounds 5]

Prints images/s for each (best of the rounds, interleaved), the ratio, and whether the pixels
are the same.
"""

import argparse
import io
import time

import numpy as np
from PIL import Image

from alexnet.data.dataset import PreparedDataset


def with_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def with_simplejpeg(data: bytes) -> np.ndarray:
    import simplejpeg

    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prepared")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ds = PreparedDataset(args.prepared, "train")
    blobs = [ds.read(i)[0] for i in range(min(args.images, len(ds)))]
    best = {}
    for _ in range(args.rounds):
        for name, fn in (("pillow", with_pillow), ("simplejpeg", with_simplejpeg)):
            start = time.perf_counter()
            for data in blobs:
                fn(data)
            best[name] = max(best.get(name, 0.0), len(blobs) / (time.perf_counter() - start))
    same = all(np.array_equal(with_pillow(d), with_simplejpeg(d)) for d in blobs)
    size = sum(map(len, blobs)) / len(blobs)
    print(f"{len(blobs)} stored JPEGs of {args.prepared} ({size / 1000:.1f} kB on average), one core, best of "
          f"{args.rounds} rounds")
    for name, rate in best.items():
        print(f"  {name:11s} {rate:8.0f} images/s")
    print(f"  ratio {best['simplejpeg'] / best['pillow']:.2f}x; identical pixels: {same}")


if __name__ == "__main__":
    main()
