"""What `alexnet prepare` can read, found from what SOURCE holds.

Every source becomes the same thing: the classes in index order, and per split a list of items
``(key, label, locator, shown)``. ``key`` is the source file's path inside its split without its
extension (the sample's name in the shards, so that each sample traces back to its file),
``locator`` is a small picklable tuple a worker process turns into bytes (``read_item``), and
``shown`` is how messages name the file.

Layouts:
- an image folder: ``train/<class>/<image>`` and ``val/<class>/<image>`` (pytorch/examples);
- the official ILSVRC-2012 files, as torchvision's ImageNet expects them: ``ILSVRC2012_img_train.tar``
  (a tar of 1000 per-class tars, read in place, never extracted), ``ILSVRC2012_img_val.tar`` (50,000
  flat images), ``ILSVRC2012_devkit_t12.tar.gz`` (validation labels); their extracted forms
  (``train/<wnid>/``, a flat ``val/``, ``ILSVRC2012_devkit_t12/``); Kaggle's layout
  (``ILSVRC/Data/CLS-LOC/{train,val}`` with ``LOC_val_solution.csv``);
- CIFAR-10's python version (``cifar-10-batches-py/``, the pickled batches; test batch = val);
- any of these packed in a ``.tar.gz``/``.tgz`` (extracted into a scratch folder first).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import pickle
import shutil
import tarfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from alexnet.errors import UserError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT_TAR = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DIR = "ILSVRC2012_devkit_t12"
KAGGLE_CSV = "LOC_val_solution.csv"
KAGGLE_DIR = Path("ILSVRC", "Data", "CLS-LOC")
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META_MAT = "data/meta.mat"

EXPECTED = (
    "expected one of: an image folder (SOURCE/train/<class>/<image>, SOURCE/val/<class>/<image>); "
    f"the ILSVRC-2012 files ({TRAIN_TAR}, {VAL_TAR}, {DEVKIT_TAR} or {KAGGLE_CSV}) or their "
    "extracted forms; CIFAR-10's cifar-10-batches-py; a .tar.gz of one of these; "
    "or a name: imagenette, cifar10"
)


@functools.cache
def imagenet_classes() -> dict[str, str]:
    """The 1000 ILSVRC-2012 wnids in sorted order (= the standard class index) -> human-readable names."""
    return json.loads(resources.files("alexnet.data").joinpath("imagenet_classes.json").read_text())


@dataclass
class Source:
    """A dataset to prepare: its description, classes ``[(id, name)]`` and per split its items."""

    kind: str
    path: Path
    classes: list[tuple[str, str]]
    splits: dict[str, list[tuple]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # split -> remark recorded in meta.json


# ---------------------------------------------------------------- reading items (in workers)


def read_item(locator: tuple) -> bytes | np.ndarray:
    """The encoded file, or for CIFAR-10 the HxWx3 pixels, that ``locator`` points at."""
    kind = locator[0]
    if kind == "file":
        with open(locator[1], "rb") as f:
            return f.read()
    if kind == "tar":  # (tar path, byte offset of the member's data, size)
        fd = os.open(locator[1], os.O_RDONLY)
        try:
            return os.pread(fd, locator[3], locator[2])
        finally:
            os.close(fd)
    if kind == "cifar":  # (batch file, row)
        return _cifar_batch(locator[1])[locator[2]]
    raise ValueError(f"unknown locator {locator!r}")


@functools.lru_cache(maxsize=2)
def _cifar_batch(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    return np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------- finding the source


def open_source(path: Path, scratch: Path) -> Source:
    """The Source that ``path`` holds; archives are extracted under ``scratch`` first."""
    path = Path(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        path = extract_archive(path, scratch / "source")
    if not path.is_dir():
        raise UserError(f"SOURCE {path} is neither a folder nor a .tar.gz archive; {EXPECTED}")
    cifar = path if (path / "batches.meta").is_file() else path / "cifar-10-batches-py"
    if (cifar / "batches.meta").is_file():
        return _cifar10(cifar)
    markers = (TRAIN_TAR, VAL_TAR, DEVKIT_TAR, DEVKIT_DIR, KAGGLE_CSV, KAGGLE_DIR)
    if any((path / m).exists() for m in markers) or _is_flat(path / "val"):
        return _ilsvrc(path)
    if (path / "train").is_dir():
        return _image_folder(path)
    raise UserError(f"SOURCE {path} holds no dataset this command knows; {EXPECTED}")


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` once (a finished extraction is reused); the folder holding the data."""
    done = dest / ".extracted"
    if not done.exists():
        tmp = dest.with_name(dest.name + ".tmp")
        _remove_tree(tmp)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise UserError(f"SOURCE {archive}: cannot read the archive: {err}") from None
        _remove_tree(dest)
        tmp.rename(dest)
        done.touch()
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _class_names(ids: list[str], names: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``[(id, name)]``: the given names, else ImageNet's names for wnids, else the id itself."""
    known = {**imagenet_classes(), **(names or {})}
    return [(i, known.get(i, i)) for i in ids]


# ---------------------------------------------------------------- image folders


def _files_under(folder: Path) -> list[Path]:
    """Regular files (symlinks followed) below ``folder``, sorted, hidden ones left out."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, f) for f in sorted(files) if not f.startswith(".")]
    return found


def make_key(relative: str) -> str:
    """A sample's name in the shards: its path in the split without extension.

    Dots left in the name become ``_``: WebDataset readers split a member's name at the first dot
    of its base name, so ``a.b.jpg`` would not be sample ``a.b``.
    """
    head, _, name = relative.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return (head + "/" if head else "") + stem.replace(".", "_")


def _subdirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _folder_items(split_dir: Path, index: dict[str, int]) -> list[tuple]:
    items = []
    for name in _subdirs(split_dir):
        for file in _files_under(split_dir / name):
            rel = file.relative_to(split_dir).as_posix()
            label = index.get(name, -1)  # -1: a class the training split lacks
            items.append((make_key(rel), label, ("file", str(file)), str(file)))
    return items


def _image_folder(path: Path) -> Source:
    ids = _subdirs(path / "train")
    if not ids:
        raise UserError(f"SOURCE {path}/train holds no class folders; {EXPECTED}")
    index = {c: i for i, c in enumerate(ids)}
    source = Source("image-folder", path, _class_names(ids))
    source.splits["train"] = _folder_items(path / "train", index)
    if (path / "val").is_dir():
        source.splits["val"] = _folder_items(path / "val", index)
    return source


def _is_flat(folder: Path) -> bool:
    """Whether ``folder`` holds files and no class folders (ILSVRC's flat validation folder)."""
    if not folder.is_dir():
        return False
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return bool(entries) and not any(p.is_dir() for p in entries)


# ---------------------------------------------------------------- ILSVRC-2012


def _tar_files(path: Path, fileobj=None, base: int = 0) -> list[tuple[str, int, int]]:
    """``(name, absolute data offset, size)`` of the files in a tar, read in place (never extracted)."""
    with tarfile.open(path if fileobj is None else None, "r:", fileobj=fileobj) as tar:
        return [(m.name, base + m.offset_data, m.size) for m in tar if m.isfile()]


def _train_from_tar(tar_path: Path) -> dict[str, list[tuple]]:
    """wnid -> items of ILSVRC2012_img_train.tar, a tar of ``<wnid>.tar`` tars."""
    per_class: dict[str, list[tuple]] = {}
    try:
        with tarfile.open(tar_path, "r:") as outer:
            for member in outer:
                if not (member.isfile() and member.name.endswith(".tar")):
                    continue
                wnid = Path(member.name).stem
                inner = _tar_files(tar_path, outer.extractfile(member), member.offset_data)
                per_class[wnid] = [
                    (make_key(f"{wnid}/{Path(name).name}"), wnid, ("tar", str(tar_path), offset, size),
                     f"{tar_path}:{member.name}/{name}")
                    for name, offset, size in sorted(inner)
                ]
    except tarfile.TarError as err:
        raise UserError(f"SOURCE {tar_path}: not a readable tar: {err}") from None
    return per_class


def _train_from_folder(folder: Path) -> dict[str, list[tuple]]:
    return {
        wnid: [(make_key(f.relative_to(folder).as_posix()), wnid, ("file", str(f)), str(f))
               for f in _files_under(folder / wnid)]
        for wnid in _subdirs(folder)
    }


def _val_images(path: Path) -> list[tuple[str, tuple, str]]:
    """``(file name, locator, shown)`` of the flat validation images, from the tar or a folder."""
    if (path / VAL_TAR).is_file():
        tar = path / VAL_TAR
        return [(Path(n).name, ("tar", str(tar), o, s), f"{tar}:{n}") for n, o, s in sorted(_tar_files(tar))]
    for folder in (path / "val", path / KAGGLE_DIR / "val"):
        if folder.is_dir():
            return [(f.name, ("file", str(f)), str(f)) for f in _files_under(folder)]
    return []


def _devkit_labels(path: Path) -> dict[str, str] | None:
    """Validation image stem -> wnid, from the devkit (tar.gz or extracted), or None if absent.

    The ground truth gives, for ILSVRC2012_val_00000001 onwards, an ILSVRC2012_ID; meta.mat maps
    those IDs to wnids. The IDs are not in sorted-wnid order, so they are never used as class indices.
    """
    if (path / DEVKIT_TAR).is_file():
        with tarfile.open(path / DEVKIT_TAR) as tar:
            files = {Path(m.name).as_posix().split("/", 1)[-1]: m for m in tar if m.isfile()}
            try:
                truth = tar.extractfile(files[GROUND_TRUTH]).read().decode()
                meta = tar.extractfile(files[META_MAT]).read()
            except KeyError as err:
                raise UserError(f"SOURCE {path / DEVKIT_TAR} lacks {err.args[0]}") from None
    elif (path / DEVKIT_DIR).is_dir():
        try:
            truth = (path / DEVKIT_DIR / GROUND_TRUTH).read_text()
            meta = (path / DEVKIT_DIR / META_MAT).read_bytes()
        except OSError as err:
            raise UserError(f"SOURCE {path / DEVKIT_DIR}: {err}") from None
    else:
        return None
    id_to_wnid = _meta_mat_wnids(meta)
    return {f"ILSVRC2012_val_{n:08d}": id_to_wnid[int(i)] for n, i in enumerate(truth.split(), start=1)}


def _meta_mat_wnids(data: bytes) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid for the leaf synsets of the devkit's meta.mat."""
    from scipy.io import loadmat

    synsets = loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
    return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}


def _kaggle_labels(path: Path) -> dict[str, str] | None:
    """Validation image stem -> wnid from Kaggle's LOC_val_solution.csv (first box's wnid)."""
    if not (path / KAGGLE_CSV).is_file():
        return None
    with open(path / KAGGLE_CSV, newline="") as f:
        return {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}


def _ilsvrc(path: Path) -> Source:
    if (path / TRAIN_TAR).is_file():
        per_class = _train_from_tar(path / TRAIN_TAR)
    elif (path / "train").is_dir() or (path / KAGGLE_DIR / "train").is_dir():
        per_class = _train_from_folder(path / "train" if (path / "train").is_dir() else path / KAGGLE_DIR / "train")
    else:
        per_class = {}
    val = _val_images(path)
    labels = _devkit_labels(path) or _kaggle_labels(path)
    missing = [
        what for what, found in [
            (f"{TRAIN_TAR} or train/<wnid>/<image>", per_class),
            (f"{VAL_TAR} or val/<image>", val),
            (f"validation labels ({DEVKIT_TAR}, {DEVKIT_DIR}/ or {KAGGLE_CSV})", labels),
        ] if not found
    ]
    if missing:
        raise UserError(f"SOURCE {path} looks like ILSVRC-2012 but lacks " + "; ".join(missing))
    ids = sorted(per_class)  # sorted wnids: the standard class index
    index = {wnid: i for i, wnid in enumerate(ids)}
    source = Source("ilsvrc2012", path, _class_names(ids))
    source.splits["train"] = [(k, index[w], loc, shown) for w in ids for k, w, loc, shown in per_class[w]]
    source.splits["val"] = [
        (make_key(name), index.get(labels.get(make_key(name), ""), -1), loc, shown) for name, loc, shown in val
    ]
    source.notes["val"] = "all validation images are kept (the usual convention)"
    return source


# ---------------------------------------------------------------- CIFAR-10


def _cifar10(folder: Path) -> Source:
    with open(folder / "batches.meta", "rb") as f:
        names = [n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"]]
    source = Source("cifar10", folder, [(n, n) for n in names])
    batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]}
    for split, files in batches.items():
        items = []
        for name in files:
            if not (folder / name).is_file():
                raise UserError(f"SOURCE {folder} lacks the CIFAR-10 batch {name}")
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            for row, (fname, label) in enumerate(zip(batch[b"filenames"], batch[b"labels"])):
                items.append((make_key(fname.decode()), int(label), ("cifar", str(folder / name), row),
                              f"{folder / name}[{row}]"))
        source.splits[split] = items
    return source

