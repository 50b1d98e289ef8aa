"""Random access to a prepared dataset (`alexnet prepare`): sample ``i`` is one ``pread`` away, the
index memory-mapped (workers share it through the page cache), a missing or damaged file named.
"""

import json
import os
from contextlib import suppress
from functools import cached_property
from pathlib import Path

import numpy as np

from alexnet.data.images import decode
from alexnet.data.shards import sample_checksum
from alexnet.errors import UserError


class PreparedDataset:
    """Split ``split`` of the prepared dataset in ``root``: ``ds[i] -> (uint8 HxWx3 image, class index)``;
    also ``labels``, ``classes``, ``mean`` and the RGB PCA on the 0-255 scale (section 4.1):
    ``pca_eigvals`` (3,) and ``pca_eigvecs`` (3x3, eigenvectors as columns)."""

    def __init__(self, root, split: str = "train"):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        if split not in self.meta["splits"]:
            raise UserError(f"{self.root} has no split {split!r} (it has: {', '.join(self.meta['splits'])})")
        self.split = split
        try:
            info = self.meta["splits"][split]
            self.extension = self.meta["image"]["extension"]
            self.image_size = self.meta["image"]["size"]
            self.classes = self.meta["classes"]
            self.class_names = [c["name"] for c in self.classes]
            self.pca_eigvals = np.array(self.meta["stats"]["pca_eigvals"], dtype=np.float64)
            self.pca_eigvecs = np.array(self.meta["stats"]["pca_eigvecs"], dtype=np.float64)
            self._shards = [str(self.root / s) for s in info["shards"]]
            # crc32 (per-sample checksums) is optional: older datasets lack it
            self._index_files = {name: self.root / info[name] for name in ("index", "labels", "crc32") if name in info}
            self._samples = int(info["samples"])
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{self.root / 'meta.json'} is damaged (bad or missing entry {err}); "
                            f"{remedy(self.root, self.meta)}") from None
        self._open_index()

    def _open_index(self) -> None:
        arrays = {}
        for name, path in self._index_files.items():
            arrays[name] = self._load(path, mmap_mode="r")
            if len(arrays[name]) != self._samples:
                raise UserError(f"{path} holds {len(arrays[name])} entries, meta.json says {self._samples} "
                                f"samples; {remedy(self.root, self.meta)}")
        self._index, self.labels, self._crc = arrays["index"], arrays["labels"], arrays.get("crc32")
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def __getstate__(self):
        local = ("_index", "labels", "_crc", "_fds", "_pid", "mean")  # reopened or reloaded in each process
        state = {k: v for k, v in self.__dict__.items() if k not in local}
        state["meta"] = {k: v for k, v in self.meta.items() if k != "checksums"}  # for `prepare --verify` only
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open_index()

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def mean(self) -> np.ndarray:
        """The training set's mean image, float32, 0-255 (section 2)."""
        return self._load(self.root / self.meta["stats"].get("mean_image", "mean.npy"))

    def _load(self, path: Path, mmap_mode=None) -> np.ndarray:
        """One of the dataset's .npy files; one line naming it if it is missing or unreadable."""
        try:
            return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        except FileNotFoundError:
            raise UserError(f"{path} is missing; {remedy(self.root, self.meta)}") from None
        except (OSError, ValueError) as err:
            raise UserError(f"{path} is unreadable ({err}); {remedy(self.root, self.meta)}") from None

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked into a worker: its own handles
            self._fds, self._pid = {}, os.getpid()
        if shard not in self._fds:
            try:
                self._fds[shard] = os.open(self._shards[shard], os.O_RDONLY)
            except OSError as err:
                raise UserError(f"{self._shards[shard]}: {err.strerror}; {remedy(self.root, self.meta)}") from None
        return self._fds[shard]

    def read(self, i) -> tuple[bytes, int]:
        """Sample ``i`` as stored and its class index; a CRC-32 mismatch is a UserError naming shard and sample."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        shard, offset, size = (int(v) for v in self._index[i])
        if not 0 <= shard < len(self._shards):
            raise UserError(f"{self._index_files['index']} is damaged (sample {int(i) % len(self)} in shard "
                            f"{shard}, of {len(self._shards)}); {remedy(self.root, self.meta)}")
        data = os.pread(self._fd(shard), size, offset)
        if self._crc is not None and sample_checksum(data) != self._crc[i]:
            raise UserError(f"{self._shards[shard]} is damaged: sample {int(i) % len(self)} of split "
                            f"{self.split!r} (bytes {offset}-{offset + size}) does not match its checksum; "
                            f"{remedy(self.root, self.meta)}")
        return data, int(self.labels[i])

    def shard_of(self, i) -> str:
        """The path of the shard that holds sample ``i`` (for messages about it)."""
        return self._shards[int(self._index[i][0])]

    def __getitem__(self, i) -> tuple[np.ndarray, int]:
        data, label = self.read(i)
        return decode(data, self.extension), label

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            with suppress(OSError):
                os.close(fd)

    def __repr__(self) -> str:
        return f"PreparedDataset({str(self.root)!r}, {self.split!r}): {len(self)} samples, {len(self.classes)} classes"


def read_meta(root: Path) -> dict:
    """The ``meta.json`` of the prepared dataset in ``root``; a UserError if there is none."""
    meta_file = Path(root) / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError:
        raise UserError(f"{root} is not a prepared dataset ({meta_file} is missing: its preparation never "
                        "finished, or the file was removed); make one with `alexnet prepare SOURCE OUT`, "
                        "or run the command that made it again") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{meta_file} is unreadable ({err.__class__.__name__}); prepare the dataset again "
                        "with `alexnet prepare SOURCE OUT --restart`") from None
    if not isinstance(meta, dict) or meta.get("format") != "alexnet-prepared-dataset":
        raise UserError(f"{meta_file} is not the meta.json of a prepared dataset")
    if not isinstance(meta.get("splits"), dict):
        raise UserError(f"{meta_file} is damaged (no splits); prepare the dataset again with "
                        "`alexnet prepare SOURCE OUT --restart`")
    return meta


def listed_files(meta: dict) -> list[str]:
    """The files of a finished prepared dataset, as named in its meta.json (relative to OUT)."""
    names = [meta.get("stats", {}).get("mean_image", "mean.npy")]
    for info in meta["splits"].values():
        names += info["shards"] + [info[key] for key in ("index", "labels", "crc32") if key in info]
    return names


def remedy(root: Path, meta: dict) -> str:
    """What to do about a damaged or incomplete prepared dataset, as the end of a message."""
    return f"`alexnet prepare --verify {root}` lists every damaged file; {prepare_again(root, meta)}"


def prepare_again(root: Path, meta: dict) -> str:
    source = meta.get("source", {}).get("given", "SOURCE")
    return f"prepare it again with `alexnet prepare {source} {root} --restart`"


def image_shape(dataset) -> tuple[int, int]:
    """``(height, width)`` of a dataset's stored images: its recorded size, else its mean image's."""
    size = getattr(dataset, "image_size", None)
    return (size, size) if size else tuple(np.shape(dataset.mean)[:2])
