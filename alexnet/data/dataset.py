"""Random access to a prepared dataset (`alexnet prepare`): sample ``i`` is one ``pread`` away.

The index (shard, byte offset, byte size per sample) and the labels are memory-mapped numpy
arrays: no per-sample Python objects, so a DataLoader's workers share them through the page cache
and host memory stays flat. File handles are opened lazily in each process, never inherited, so
the dataset pickles in microseconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from alexnet.data.images import decode
from alexnet.errors import UserError


class PreparedDataset:
    """Split ``split`` of the prepared dataset in ``root``: ``ds[i] -> (uint8 HxWx3 image, class index)``.

    Also ``read(i) -> (stored bytes, class index)`` for loaders that decode and crop in one step,
    ``labels`` (int64 array), ``classes`` (list of ``{"index", "id", "name"}``), ``class_names``,
    ``mean`` (the training mean image, float32 HxWx3, 0-255) and the training pixels' RGB PCA:
    ``pca_eigvals`` (3,) and ``pca_eigvecs`` (3x3, eigenvectors as columns), 0-255 scale (section 4.1).
    """

    def __init__(self, root, split: str = "train"):
        self.root = Path(root)
        meta_file = self.root / "meta.json"
        try:
            self.meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            raise UserError(f"{self.root} is not a prepared dataset (no readable meta.json); "
                            "make one with `alexnet prepare SOURCE OUT`") from None
        if self.meta.get("format") != "alexnet-prepared-dataset":
            raise UserError(f"{meta_file} is not the meta.json of a prepared dataset")
        if split not in self.meta["splits"]:
            raise UserError(f"{self.root} has no split {split!r} (it has: {', '.join(self.meta['splits'])})")
        self.split = split
        info = self.meta["splits"][split]
        self.extension = self.meta["image"]["extension"]
        self.image_size = self.meta["image"]["size"]
        self.classes = self.meta["classes"]
        self.class_names = [c["name"] for c in self.classes]
        stats = self.meta["stats"]
        self.pca_eigvals = np.array(stats["pca_eigvals"], dtype=np.float64)
        self.pca_eigvecs = np.array(stats["pca_eigvecs"], dtype=np.float64)
        self._shards = [str(self.root / s) for s in info["shards"]]
        self._index_files = (self.root / info["index"], self.root / info["labels"])
        self._open_index()

    def _open_index(self) -> None:
        self._index = np.load(self._index_files[0], mmap_mode="r")
        self.labels = np.load(self._index_files[1], mmap_mode="r")
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_index", "labels", "_fds", "_pid", "_mean"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open_index()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def mean(self) -> np.ndarray:
        """The training set's mean image, float32, 0-255 (section 2)."""
        if getattr(self, "_mean", None) is None:
            self._mean = np.load(self.root / self.meta["stats"]["mean_image"])
        return self._mean

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked into a worker: its own handles
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self._shards[shard], os.O_RDONLY)
        return fd

    def read(self, i) -> tuple[bytes, int]:
        """Sample ``i`` as stored (JPEG or .npy bytes, undecoded) and its class index."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        shard, offset, size = (int(v) for v in self._index[i])
        return os.pread(self._fd(shard), size, offset), int(self.labels[i])

    def __getitem__(self, i) -> tuple[np.ndarray, int]:
        data, label = self.read(i)
        return decode(data, self.extension), label

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        classes = len(self.classes)
        return f"PreparedDataset({str(self.root)!r}, {self.split!r}): {len(self)} samples, {classes} classes"
