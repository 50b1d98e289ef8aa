"""CIFAR-10's python version (``cifar-10-batches-py/``) as a source of `alexnet prepare`; the test batch becomes
the validation split. The batches are pickles, which may call any function (``os.system``): here the unpickler
builds nothing but the format's dicts, lists, bytes, numbers and numpy arrays, then checks that they are a
batch: uint8 ``data`` of N rows x 3072, N ``labels`` that are class numbers."""

import functools
import io
import pickle
from pathlib import Path

import numpy as np

from alexnet.data.source_files import Source, class_ids, make_key, read_source_file
from alexnet.errors import UserError

CIFAR_MAX_BYTES = 2**27  # a CIFAR-10 batch file is 31 MB; a larger one is not loaded into memory
ROW = 3 * 32 * 32  # one image's bytes in a batch: the red plane, then green, then blue


def cifar10_source(folder: Path) -> Source:
    meta = unpickle(folder / "batches.meta")
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not (isinstance(names, list) and names and all(isinstance(n, bytes) for n in names)):
        raise UserError(f"{folder / 'batches.meta'}: not CIFAR-10's batches.meta (no list of label_names)")
    ids = class_ids([n.decode(errors="replace") for n in names])
    source = Source("cifar10", folder, [(i, i) for i in ids])
    for split, name in [("train", f"data_batch_{i}") for i in range(1, 6)] + [("val", "test_batch")]:
        if not (folder / name).is_file():
            raise UserError(f"SOURCE {folder} lacks the CIFAR-10 batch {name}")
        _, labels, filenames = batch(folder / name, len(ids))
        source.splits.setdefault(split, []).extend(
            (make_key(fname), label, ("cifar", str(folder / name), row), f"{folder / name}[{row}]")
            for row, (fname, label) in enumerate(zip(filenames, labels)))
    return source


@functools.lru_cache(maxsize=2)
def cifar_pixels(path: str) -> np.ndarray:
    return batch(Path(path))[0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def batch(path: Path, classes: int = 256) -> tuple[np.ndarray, list[int], list[str]]:
    """A batch's pixels (uint8, N x 3072), labels (< ``classes``) and file names, checked to be those."""
    content = unpickle(path)
    pixels = content.get(b"data") if isinstance(content, dict) else None
    if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 2
            and pixels.shape[1] == ROW):
        raise UserError(f"{path}: not a CIFAR-10 batch (no uint8 data of N rows x {ROW})")
    labels = content.get(b"labels")
    if not (isinstance(labels, list) and len(labels) == len(pixels)
            and all(isinstance(x, int) and 0 <= x < classes for x in labels)):
        raise UserError(f"{path}: not a CIFAR-10 batch (labels are not {len(pixels)} class numbers "
                        f"from 0 to {classes - 1})")
    filenames = content.get(b"filenames")
    if not (isinstance(filenames, list) and len(filenames) == len(pixels)
            and all(isinstance(f, bytes) for f in filenames)):
        filenames = [f"{path.name}_{row:05d}".encode() for row in range(len(pixels))]
    return pixels, labels, [f.decode(errors="replace") for f in filenames]


def unpickle(path: Path):
    """What the pickle file ``path`` holds (at most CIFAR_MAX_BYTES), built from the format's types alone."""
    data = read_source_file(path, CIFAR_MAX_BYTES)
    try:
        return _Unpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # a hostile or damaged pickle fails in any way an object's set-up can
        raise UserError(f"{path}: refused, not a CIFAR-10 pickle: {err}") from None


class _ArrayType:
    """What a pickle gets for ``numpy.ndarray``: only ``_reconstruct`` takes it (not ``ndarray((2**40,))``)."""


def _empty_array(subtype, shape, dtype):
    """numpy's ``_reconstruct`` as its pickles call it: an empty array, filled by the bytes the pickle holds."""
    if subtype is not _ArrayType or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"it builds an array {subtype!r} of shape {shape!r}, unlike numpy's pickles")
    return np.zeros(1).__reduce__()[0](np.ndarray, (0,), dtype)  # numpy's own, under whichever module name it has


_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 pickles arrays through it: sized by its buffer
# The functions numpy's pickled arrays name, under numpy 1's module names (those of the real files) and numpy 2's.
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): _empty_array,
                  ("numpy._core.multiarray", "_reconstruct"): _empty_array,
                  ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
                  ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
                  ("numpy", "ndarray"): _ArrayType, ("numpy", "dtype"): np.dtype}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"it calls {module}.{name}, which no CIFAR-10 batch does")
        return _NUMPY_GLOBALS[module, name]
