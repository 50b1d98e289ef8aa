"""Test data for loading: an in-memory stand-in for PreparedDataset, and tiny image folders."""

import io

import numpy as np
from PIL import Image


class StandInPreparedDataset:
    """A tiny in-memory stand-in for ``alexnet.data.dataset.PreparedDataset`` (same interface:
    ``read``, ``extension``, ``[i]``, ``labels``, ``classes``, ``mean``, ``pca_eigvals``, ``pca_eigvecs``, ``len``),
    so that loading tests need no prepared folder on disk."""

    def __init__(self, count=24, size=48, num_classes=3, encoding="npy", seed=0):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
        self.labels = (np.arange(count) % num_classes).astype(np.int64)
        self.classes = [f"class{c}" for c in range(num_classes)]
        self.mean = self.images.mean(axis=0, dtype=np.float64).astype(np.float32)
        pixels = self.images.reshape(-1, 3).astype(np.float64)
        self.pca_eigvals, self.pca_eigvecs = np.linalg.eigh(np.cov(pixels, rowvar=False))
        self.root = "stand-in"
        self.extension = "npy" if encoding == "npy" else "jpg"
        self.blobs = [self._encode(image, encoding) for image in self.images]

    @staticmethod
    def _encode(image, encoding):
        buffer = io.BytesIO()
        if encoding == "npy":
            np.save(buffer, image)
        else:
            Image.fromarray(image).save(buffer, "JPEG", quality=90)
        return buffer.getvalue()

    def __len__(self):
        return len(self.images)

    def read(self, i):
        return self.blobs[i], int(self.labels[i])

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def make_image_folder(root, classes=("n01440764", "n01443537"), per_class=3, seed=0):
    """``root/{train,val}/<wnid>/<wnid>_<k>.JPEG``: a tiny source for ``alexnet prepare``, of
    random images of three sizes."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for wnid in classes:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = rng.integers(0, 256, (260 + 10 * k, 300, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{k}.JPEG", quality=90)
    return root
