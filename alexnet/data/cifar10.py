"""CIFAR-10's python version (``cifar-10-batches-py/``) as a source of `alexnet prepare`: the
pickled batches, read by an unpickler that builds nothing but the format's dicts, lists, bytes and
numpy arrays (:mod:`alexnet.data.cifar_pickle`); the test batch becomes the validation split.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from alexnet.data import cifar_pickle
from alexnet.data.source_files import Source, class_ids, make_key, read_source_file
from alexnet.errors import UserError

CIFAR_MAX_BYTES = 2**27  # a CIFAR-10 batch file is 31 MB; a larger one is not loaded into memory


def cifar10_source(folder: Path) -> Source:
    meta = folder / "batches.meta"
    ids = class_ids(cifar_pickle.label_names(meta, _cifar_bytes(meta)))
    source = Source("cifar10", folder, [(i, i) for i in ids])
    batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]}
    for split, files in batches.items():
        items = []
        for name in files:
            if not (folder / name).is_file():
                raise UserError(f"SOURCE {folder} lacks the CIFAR-10 batch {name}")
            _, labels, filenames = cifar_pickle.batch(folder / name, _cifar_bytes(folder / name), len(ids))
            for row, (fname, label) in enumerate(zip(filenames, labels)):
                items.append((make_key(fname), label, ("cifar", str(folder / name), row), f"{folder / name}[{row}]"))
        source.splits[split] = items
    return source


def _cifar_bytes(path: Path) -> bytes:
    return read_source_file(path, CIFAR_MAX_BYTES)


@functools.lru_cache(maxsize=2)
def cifar_pixels(path: str) -> np.ndarray:
    data = cifar_pickle.batch(Path(path), _cifar_bytes(Path(path)))[0]
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
