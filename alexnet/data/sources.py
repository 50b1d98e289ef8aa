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

Sources are not trusted: CIFAR-10's pickles are read by an unpickler that builds nothing but the
dicts, lists, bytes and numpy arrays of the format (``cifar_pickle``: a pickle can otherwise run
any code); only regular files are read (a FIFO would block forever), no folder is read twice (a link loop would
repeat images under other classes), and names from tars become keys and class ids that are single,
harmless path components (a member named ``...tar`` would otherwise make a class ``..``).
"""

from __future__ import annotations

import csv
import errno
import functools
import io
import json
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from alexnet.data import cifar_pickle
from alexnet.data.images import BadImage
from alexnet.errors import UserError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT_TAR = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DIR = "ILSVRC2012_devkit_t12"
KAGGLE_CSV = "LOC_val_solution.csv"
KAGGLE_DIR = Path("ILSVRC", "Data", "CLS-LOC")
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
LAYOUT_PARTS = ("train", "val", DEVKIT_DIR, KAGGLE_DIR.parts[0])  # top folders a layout is made of
META_MAT = "data/meta.mat"
DEVKIT_MAX_BYTES = 2**26  # the devkit's files are at most 2 MB

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


def read_item(locator: tuple, max_bytes: int) -> bytes | np.ndarray:
    """The encoded file, or for CIFAR-10 the HxWx3 pixels, that ``locator`` points at.

    BadImage if it is not a regular file or holds more than ``max_bytes`` (then it is not read).
    """
    kind = locator[0]
    if kind == "file":
        return read_regular(Path(locator[1]), max_bytes)
    if kind == "tar":  # (tar path, byte offset of the member's data, size)
        if locator[3] > max_bytes:
            raise BadImage(_too_large(locator[3], max_bytes))
        fd = os.open(locator[1], os.O_RDONLY)
        try:
            return os.pread(fd, locator[3], locator[2])
        finally:
            os.close(fd)
    if kind == "cifar":  # (batch file, row)
        return _cifar_batch(locator[1])[locator[2]]
    if kind == "skip":  # (reason): an entry found while walking the source that holds no image
        raise BadImage(locator[1])
    raise ValueError(f"unknown locator {locator!r}")


_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
          stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` (symlinks followed); BadImage unless it is a regular file of at most
    ``max_bytes``. Devices and FIFOs are never opened for reading: one could block forever."""
    def check(info):
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS.items() if test(info.st_mode)), "not a file")
            raise BadImage(f"not a regular file ({kind})")
        if info.st_size > max_bytes:
            raise BadImage(_too_large(info.st_size, max_bytes))

    check(os.stat(path))
    # O_NONBLOCK: if it was swapped for a FIFO since, the open does not wait for a writer.
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        check(os.fstat(f.fileno()))
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadImage(_too_large(len(data), max_bytes))
    return data


def _too_large(size: int, max_bytes: int) -> str:
    return f"too large: {size} bytes, above the limit of {max_bytes}; not read"


@functools.lru_cache(maxsize=2)
def _cifar_batch(path: str) -> np.ndarray:
    data = cifar_pickle.batch(Path(path), _cifar_bytes(Path(path)))[0]
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


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
        except OSError as err:
            if err.errno == errno.ENOSPC:
                _remove_tree(tmp)
                raise UserError(f"SOURCE {archive}: no space left on the device to extract it into {tmp} "
                                f"(it needs about {_archive_bytes(archive) / 2**20:.1f} MiB); free some space "
                                "and run the same command again") from None
            raise UserError(f"SOURCE {archive}: cannot read the archive: {err}") from None
        except (tarfile.TarError, EOFError) as err:
            raise UserError(f"SOURCE {archive}: cannot read the archive: {err}") from None
        _remove_tree(dest)
        tmp.rename(dest)
        done.touch()
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    # One top folder is a wrapper (imagenette2-320/) unless it is itself a part of a layout
    # (a .tar.gz of an image folder whose only split is train/).
    wrapper = len(entries) == 1 and entries[0].is_dir() and entries[0].name not in LAYOUT_PARTS
    return entries[0] if wrapper else dest


def _archive_bytes(archive: Path) -> int:
    """What the files of ``archive`` take once extracted (a second pass over it: only after a failure)."""
    with tarfile.open(archive) as tar:
        return sum(m.size for m in tar if m.isfile())


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _class_names(ids: list[str], names: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``[(id, name)]``: the given names, else ImageNet's names for wnids, else the id itself."""
    known = {**imagenet_classes(), **(names or {})}
    return [(i, known.get(i, i)) for i in ids]


# ---------------------------------------------------------------- image folders


def _files_under(folder: Path) -> list[tuple[Path, str | None]]:
    """The files below ``folder`` as ``(path, None)``, sorted, hidden ones left out.

    Symlinks are followed, but no folder is read twice: a link back up (``a/loop -> ..``) or a
    second link to a folder already read comes as ``(path, reason)``, as does a folder that cannot
    be listed, so that it is listed among the skipped files instead of repeating images or vanishing.
    """
    found: list[tuple[Path, str | None]] = []
    seen = {_identity(folder): folder}

    def unreadable(err: OSError) -> None:
        found.append((Path(err.filename), f"unreadable folder: {err.strerror}"))

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            path = Path(root, name)
            try:
                first = seen.setdefault(_identity(path), path)
            except OSError as err:
                found.append((path, f"unreadable folder: {err.strerror}"))
                continue
            if first == path:
                kept.append(name)
            else:
                found.append((path, f"a link to {first}, a folder read already"))
        dirs[:] = kept
        found += [(Path(root, f), None) for f in sorted(files) if not f.startswith(".")]
    return found


def _identity(folder: Path) -> tuple[int, int]:
    info = os.stat(folder)
    return info.st_dev, info.st_ino


def _locator(path: Path, reason: str | None) -> tuple:
    return ("file", str(path)) if reason is None else ("skip", reason)


def safe_component(name: str) -> str:
    """``name`` as one harmless path component: no separator, NUL, ``.`` or ``..`` (a shard member
    ``../x.jpg`` would be written outside the folder it is extracted into)."""
    name = name.replace("/", "_").replace("\\", "_").replace("\0", "_")
    return name if name.strip(".") else "_" * max(len(name), 1)


def make_key(relative: str) -> str:
    """A sample's name in the shards: its path in the split without extension, each part made a
    harmless path component (:func:`safe_component`).

    Dots left in the name become ``_``: WebDataset readers split a member's name at the first dot
    of its base name, so ``a.b.jpg`` would not be sample ``a.b``.
    """
    *head, name = relative.split("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return "/".join([safe_component(p) for p in head if p not in ("", ".")] + [safe_component(stem.replace(".", "_"))])


def _subdirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _class_files(split_dir: Path) -> list[tuple[str, str, Path, str | None]]:
    """``(class folder, key, path, reason)`` of the files in the class folders of ``split_dir``
    (see _files_under; files beside the class folders belong to no class and are left out)."""
    found = []
    for path, reason in _files_under(split_dir):
        rel = path.relative_to(split_dir).as_posix()
        if "/" in rel or reason is not None:
            found.append((rel.split("/", 1)[0], make_key(rel), path, reason))
    return found


def _folder_items(split_dir: Path, index: dict[str, int]) -> list[tuple]:
    # label -1: a class the training split lacks
    return [(key, index.get(name, -1), _locator(path, reason), str(path))
            for name, key, path, reason in _class_files(split_dir)]


def _image_folder(path: Path) -> Source:
    ids = _subdirs(path / "train")
    if not ids:
        raise UserError(f"SOURCE {path}/train holds no class folders; {EXPECTED}")
    index = {c: i for i, c in enumerate(ids)}
    source = Source("image-folder", path, _class_names([safe_component(i) for i in ids]))
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
                wnid = safe_component(Path(member.name).stem)
                if wnid in per_class:
                    raise UserError(f"SOURCE {tar_path}: two members make the class {wnid} "
                                    f"(the second: {member.name}); not the ILSVRC-2012 train tar")
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
    per_class: dict[str, list[tuple]] = {wnid: [] for wnid in _subdirs(folder)}
    for wnid, key, path, reason in _class_files(folder):
        per_class.setdefault(wnid, []).append((key, wnid, _locator(path, reason), str(path)))
    return per_class


def _val_images(path: Path) -> list[tuple[str, tuple, str]]:
    """``(file name, locator, shown)`` of the flat validation images, from the tar or a folder."""
    if (path / VAL_TAR).is_file():
        tar = path / VAL_TAR
        return [(Path(n).name, ("tar", str(tar), o, s), f"{tar}:{n}") for n, o, s in sorted(_tar_files(tar))]
    for folder in (path / "val", path / KAGGLE_DIR / "val"):
        if folder.is_dir():
            return [(f.name, _locator(f, reason), str(f)) for f, reason in _files_under(folder)]
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
            truth = read_regular(path / DEVKIT_DIR / GROUND_TRUTH, DEVKIT_MAX_BYTES).decode()
            meta = read_regular(path / DEVKIT_DIR / META_MAT, DEVKIT_MAX_BYTES)
        except (OSError, BadImage) as err:
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
    source = Source("ilsvrc2012", path, _class_names([safe_component(i) for i in ids]))
    source.splits["train"] = [(k, index[w], loc, shown) for w in ids for k, w, loc, shown in per_class[w]]
    source.splits["val"] = [
        (make_key(name), index.get(labels.get(make_key(name), ""), -1), loc, shown) for name, loc, shown in val
    ]
    source.notes["val"] = "all validation images are kept (the usual convention)"
    return source


# ---------------------------------------------------------------- CIFAR-10


CIFAR_MAX_BYTES = 2**27  # a CIFAR-10 batch file is 31 MB; a larger one is not loaded into memory


def _cifar10(folder: Path) -> Source:
    meta = folder / "batches.meta"
    ids = [safe_component(n) for n in cifar_pickle.label_names(meta, _cifar_bytes(meta))]
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
    try:
        return read_regular(path, CIFAR_MAX_BYTES)
    except BadImage as err:
        raise UserError(f"{path}: {err}") from None
