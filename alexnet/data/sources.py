"""What `alexnet prepare` can read: an image folder (``train/`` and ``val/`` of class folders, or class folders
alone), ILSVRC-2012 (:mod:`alexnet.data.ilsvrc`), CIFAR-10 (:mod:`alexnet.data.cifar10`), or any of these in a
``.tar.gz``/``.tgz``, extracted first. Each becomes a :class:`Source`: the classes in index order, and per split
items ``(key, label, locator, shown)``: the sample's name in the shards (its path in the split without extension),
a picklable tuple that a worker reads (:func:`read_item`), how messages name the file."""

import errno
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np

from alexnet.data.cifar10 import cifar10_source, cifar_pixels
from alexnet.data.ilsvrc import (DEVKIT_DIR, DEVKIT_TAR, KAGGLE_CSV, KAGGLE_DIR, MARKERS, TRAIN_TAR, VAL_TAR,
                                 ilsvrc_source)
from alexnet.data.images import BadImage
from alexnet.data.source_files import (Source, class_files, class_names, distinct, file_locator, read_regular,
                                       subdirs, too_large)
from alexnet.errors import UserError

LAYOUT_PARTS = ("train", "val", DEVKIT_DIR, KAGGLE_DIR.parts[0])  # top folders a layout is made of

EXPECTED = ("expected one of: an image folder (SOURCE/train/<class>/<image>, SOURCE/val/<class>/<image>, "
            f"or SOURCE/<class>/<image> alone); the ILSVRC-2012 files ({TRAIN_TAR}, {VAL_TAR}, {DEVKIT_TAR} or "
            f"{KAGGLE_CSV}) or their extracted forms; CIFAR-10's cifar-10-batches-py; a .tar.gz of one of these; "
            "or a name: imagenette, cifar10")


def read_item(locator: tuple, max_bytes: int) -> bytes | np.ndarray:
    """The encoded file, or for CIFAR-10 the HxWx3 pixels, that ``locator`` points at; BadImage if it
    is not a regular file or holds more than ``max_bytes`` (then it is not read)."""
    match locator:
        case ("file", path):
            return read_regular(Path(path), max_bytes)
        case ("tar", path, offset, size):
            if size > max_bytes:
                raise BadImage(too_large(size, max_bytes))
            with open(path, "rb", buffering=0) as f:
                return os.pread(f.fileno(), size, offset)
        case ("cifar", batch_file, row):
            return cifar_pixels(batch_file)[row]
        case ("skip", reason):  # an entry found while walking the source that holds no image
            raise BadImage(reason)
    raise ValueError(f"unknown locator {locator!r}")


def open_source(path: Path, scratch: Path) -> Source:
    """The Source that ``path`` holds, each sample's key unique in its split (:func:`distinct`);
    archives are extracted under ``scratch`` first."""
    source = _find_source(Path(path), scratch)
    for split, items in source.splits.items():
        keys = distinct([item[0] for item in items])
        source.splits[split] = [(key, *item[1:]) for key, item in zip(keys, items)]
    return source


def _find_source(path: Path, scratch: Path) -> Source:
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        path = extract_archive(path, scratch / "source")
    if not path.is_dir():
        raise UserError(f"SOURCE {path} is neither a folder nor a .tar.gz archive; {EXPECTED}")
    cifar = path if (path / "batches.meta").is_file() else path / "cifar-10-batches-py"
    if (cifar / "batches.meta").is_file():
        return cifar10_source(cifar)
    if any((path / m).exists() for m in MARKERS) or is_flat(path / "val"):
        return ilsvrc_source(path)
    if (path / "train").is_dir():
        return _image_folder(path, {split: path / split for split in ("train", "val") if (path / split).is_dir()})
    classes = subdirs(path)
    if classes and not set(classes) & set(LAYOUT_PARTS):  # torchvision's ImageFolder: prepare holds out val
        source = _image_folder(path, {"train": path})
        source.notes["train"] = "the class folders of SOURCE itself (it has no train/ and val/)"
        return source
    raise UserError(f"SOURCE {path} holds no dataset this command knows; {EXPECTED}")


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` once (a finished extraction is reused); the folder holding the data."""
    if not (dest / ".extracted").exists():
        tmp = dest.with_name(dest.name + ".tmp")
        _remove_tree(tmp)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (OSError, tarfile.TarError, EOFError) as err:
            if getattr(err, "errno", None) == errno.ENOSPC:
                _remove_tree(tmp)
                with tarfile.open(archive) as tar:  # a second pass over it, only after a failure
                    needed = sum(m.size for m in tar if m.isfile())
                raise UserError(f"SOURCE {archive}: no space left on the device to extract it into {tmp} "
                                f"(it needs about {needed / 2**20:.1f} MiB); free some space "
                                "and run the same command again") from None
            raise UserError(f"SOURCE {archive}: cannot read the archive: {err}") from None
        _remove_tree(dest)
        tmp.rename(dest)
        (dest / ".extracted").touch()
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    # One top folder is a wrapper (imagenette2-320/) unless a part of a layout (a .tar.gz of train/ alone).
    wrapper = len(entries) == 1 and entries[0].is_dir() and entries[0].name not in LAYOUT_PARTS
    return entries[0] if wrapper else dest


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _image_folder(path: Path, splits: dict[str, Path]) -> Source:
    """Class folders per split, labelled by the training split's (-1: a class it lacks)."""
    ids = subdirs(splits["train"])
    if not ids:
        raise UserError(f"SOURCE {path}/train holds no class folders; {EXPECTED}")
    index = {c: i for i, c in enumerate(ids)}
    source = Source("image-folder", path, class_names(ids))
    for split, folder in splits.items():
        source.splits[split] = [(key, index.get(name, -1), file_locator(file, reason), str(file))
                                for name, key, file, reason in class_files(folder)]
    return source


def is_flat(folder: Path) -> bool:
    """Whether ``folder`` holds files and no class folders (ILSVRC's flat validation folder)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    return bool(entries) and not any(p.is_dir() for p in entries)
