"""The official ILSVRC-2012 files as a source of `alexnet prepare`, as torchvision's ImageNet expects them: the
train tar (1000 per-class tars, read in place), the val tar, the devkit (validation labels); their extracted forms
(``train/<wnid>/``, a flat ``val/``, the devkit folder); Kaggle's ``ILSVRC/Data/CLS-LOC/`` and its csv."""

import csv
import io
import math
import re
import struct
import tarfile
import zlib
from pathlib import Path

from alexnet.data.source_files import (Source, class_files, class_names, file_locator, files_under, make_key,
                                       read_source_file, safe_component, subdirs, too_large)
from alexnet.errors import UserError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT_TAR = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DIR = "ILSVRC2012_devkit_t12"
KAGGLE_CSV = "LOC_val_solution.csv"
KAGGLE_DIR = Path("ILSVRC", "Data", "CLS-LOC")
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META_MAT = "data/meta.mat"
DEVKIT_MAX_BYTES = 2**26  # the devkit's files are at most 2 MB
MAT_MAX_ELEMENTS = 2**24  # the real meta.mat's arrays hold under 10^6 elements in all
MAX_VAL_LABELS = 10**6  # labels in the ground truth: 50,000 (each costs about 150 bytes in memory)
MARKERS = (TRAIN_TAR, VAL_TAR, DEVKIT_TAR, DEVKIT_DIR, KAGGLE_CSV, KAGGLE_DIR)  # any of them: ILSVRC-2012


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
                per_class[wnid] = [(make_key(f"{wnid}/{Path(name).name}"), wnid, ("tar", str(tar_path), offset, size),
                                    f"{tar_path}:{member.name}/{name}") for name, offset, size in sorted(inner)]
    except tarfile.TarError as err:
        raise UserError(f"SOURCE {tar_path}: not a readable tar: {err}") from None
    return per_class


def _train_from_folder(path: Path) -> dict[str, list[tuple]]:
    """wnid -> items of the extracted training images (``train/<wnid>/``, or Kaggle's)."""
    for folder in (path / "train", path / KAGGLE_DIR / "train"):
        if folder.is_dir():
            per_class: dict[str, list[tuple]] = {wnid: [] for wnid in subdirs(folder)}
            for wnid, key, file, reason in class_files(folder):
                per_class.setdefault(wnid, []).append((key, wnid, file_locator(file, reason), str(file)))
            return per_class
    return {}


def _val_images(path: Path) -> list[tuple[str, tuple, str]]:
    """``(file name, locator, shown)`` of the flat validation images, from the tar or a folder."""
    if (tar := path / VAL_TAR).is_file():
        return [(Path(n).name, ("tar", str(tar), o, s), f"{tar}:{n}") for n, o, s in sorted(_tar_files(tar))]
    for folder in (path / "val", path / KAGGLE_DIR / "val"):
        if folder.is_dir():
            return [(f.name, file_locator(f, reason), str(f)) for f, reason in files_under(folder)]
    return []


def _devkit_labels(path: Path) -> dict[str, str] | None:
    """Validation image stem -> wnid from the devkit (tar.gz or extracted; None if absent): the ground truth's
    ILSVRC2012_IDs (never class indices), mapped by meta.mat; each file read only if at most DEVKIT_MAX_BYTES."""
    if (devkit := path / DEVKIT_TAR).is_file():
        try:
            with tarfile.open(devkit) as tar:
                files = {Path(m.name).as_posix().split("/", 1)[-1]: m for m in tar if m.isfile()}
                for name in (GROUND_TRUTH, META_MAT):
                    if name not in files:
                        raise UserError(f"SOURCE {devkit} lacks {name}")
                    if files[name].size > DEVKIT_MAX_BYTES:
                        raise UserError(f"SOURCE {devkit}: {name} is {too_large(files[name].size, DEVKIT_MAX_BYTES)}")
                truth, meta = (tar.extractfile(files[name]).read() for name in (GROUND_TRUTH, META_MAT))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            raise UserError(f"SOURCE {devkit}: not a readable .tar.gz: {err}") from None
    elif (devkit := path / DEVKIT_DIR).is_dir():
        truth, meta = (read_source_file(devkit / name, DEVKIT_MAX_BYTES) for name in (GROUND_TRUTH, META_MAT))
    else:
        return None
    id_to_wnid = _meta_mat_wnids(meta, f"{devkit}: {META_MAT}")
    fields = truth.split(maxsplit=MAX_VAL_LABELS)  # never more pieces than that, whatever the file holds
    if len(fields) > MAX_VAL_LABELS:
        raise UserError(f"{devkit}: {GROUND_TRUTH} holds more than {MAX_VAL_LABELS} labels "
                        "(ILSVRC-2012 has 50,000 validation images); not the devkit's")
    labels = {}
    for n, field in enumerate(fields, start=1):
        try:
            labels[f"ILSVRC2012_val_{n:08d}"] = id_to_wnid[int(field)]
        except (ValueError, KeyError):
            raise UserError(f"{devkit}: {GROUND_TRUTH}: the label of ILSVRC2012_val_{n:08d} is "
                            f"{field[:20].decode(errors='replace')!r}, not one of the {len(id_to_wnid)} "
                            f"ILSVRC2012_IDs of {META_MAT}") from None
    return labels


def _meta_mat_wnids(data: bytes, shown: str) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid for the leaf synsets of the devkit's meta.mat."""
    from scipy.io import loadmat

    try:
        _check_mat_sizes(data)
    except ValueError as err:
        raise UserError(f"{shown}: not the devkit's meta.mat ({err}); not read") from None
    try:
        synsets = loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
        wnids = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except Exception as err:  # scipy and a damaged file fail in any way a parser can
        raise UserError(f"{shown}: not the devkit's meta.mat ({type(err).__name__}: {err})") from None
    if not wnids:
        raise UserError(f"{shown}: not the devkit's meta.mat (no leaf synsets)")
    return wnids


def _check_mat_sizes(data: bytes) -> None:
    """ValueError unless ``data`` is a MATLAB 5 file declaring at most MAT_MAX_ELEMENTS array elements, inflating
    to at most DEVKIT_MAX_BYTES (scipy allocates the declared size: 300 bytes could cost gigabytes)."""
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise ValueError("not a MATLAB 5 file")
    order = "<" if data[126:128] == b"IM" else ">"
    # Every array starts with its flags (miUINT32, 8 bytes), then its dims (miINT32).
    flags, dims_tag = struct.pack(f"{order}II", 6, 8), struct.pack(f"{order}I", 5)
    array_flags = re.compile(re.escape(flags) + b".{8}" + re.escape(dims_tag), re.DOTALL)
    declared, position, budget = 0, 128, DEVKIT_MAX_BYTES
    while position + 8 <= len(data):
        kind, size = struct.unpack_from(f"{order}II", data, position)
        body = data[position + 8:position + 8 + size]
        if kind == 15:  # miCOMPRESSED: one variable, deflated
            inflate = zlib.decompressobj()
            try:
                body = inflate.decompress(body, budget)
            except zlib.error as err:
                raise ValueError(f"a compressed variable is damaged: {err}") from None
            if inflate.unconsumed_tail:
                raise ValueError(f"its variables inflate past {DEVKIT_MAX_BYTES} bytes")
            budget -= len(body)
        for found in array_flags.finditer(body):
            (length,) = struct.unpack_from(f"{order}I", body, found.end())
            dims = struct.unpack_from(f"{order}{min(length // 4, 32)}i", body, found.end() + 4)
            declared += math.prod(max(d, 0) for d in dims)
        position += 8 + size + (0 if kind == 15 else -size % 8)
    if declared > MAT_MAX_ELEMENTS:
        raise ValueError(f"its arrays declare {declared} elements, above the limit of {MAT_MAX_ELEMENTS}")


def _kaggle_labels(path: Path) -> dict[str, str] | None:
    """Validation image stem -> wnid from Kaggle's LOC_val_solution.csv (first box's wnid)."""
    if not (path / KAGGLE_CSV).is_file():
        return None
    rows = csv.DictReader(io.StringIO(read_source_file(path / KAGGLE_CSV, DEVKIT_MAX_BYTES).decode(errors="replace")))
    try:
        return {row["ImageId"]: row["PredictionString"].split()[0] for row in rows}
    except (KeyError, IndexError, AttributeError, csv.Error):
        raise UserError(f"SOURCE {path / KAGGLE_CSV}: line {rows.line_num} is not ImageId,PredictionString "
                        "with a wnid first") from None


def ilsvrc_source(path: Path) -> Source:
    per_class = _train_from_tar(path / TRAIN_TAR) if (path / TRAIN_TAR).is_file() else _train_from_folder(path)
    val = _val_images(path)
    labels = _devkit_labels(path) or _kaggle_labels(path)
    wanted = {f"{TRAIN_TAR} or train/<wnid>/<image>": per_class, f"{VAL_TAR} or val/<image>": val,
              f"validation labels ({DEVKIT_TAR}, {DEVKIT_DIR}/ or {KAGGLE_CSV})": labels}
    missing = [what for what, found in wanted.items() if not found]
    if missing:
        raise UserError(f"SOURCE {path} looks like ILSVRC-2012 but lacks " + "; ".join(missing))
    ids = sorted(per_class)  # sorted wnids: the standard class index
    index = {wnid: i for i, wnid in enumerate(ids)}
    source = Source("ilsvrc2012", path, class_names(ids))
    source.splits["train"] = [(k, index[w], loc, shown) for w in ids for k, w, loc, shown in per_class[w]]
    source.splits["val"] = [(make_key(name), index.get(labels.get(make_key(name), ""), -1), loc, shown)
                            for name, loc, shown in val]
    source.notes["val"] = "all validation images are kept (the usual convention)"
    return source
