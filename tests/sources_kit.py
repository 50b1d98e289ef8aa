"""Tiny datasets in every source layout `alexnet prepare` reads, made in a temporary folder.

Each image is a solid colour that encodes its class, so a test can tell from the prepared pixels
which class an image came from: ``colour(c) = (40 * c + 20, 200 - 30 * c, 90)``.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

# Three real ILSVRC-2012 wnids; the devkit below numbers them in another order than sorted.
WNIDS = ["n01440764", "n01443537", "n01484850"]
DEVKIT_IDS = {"n01484850": 1, "n01440764": 2, "n01443537": 3}  # ILSVRC2012_ID: not sorted-wnid order


def colour(c: int) -> tuple[int, int, int]:
    return (40 * c + 20, 200 - 30 * c, 90)


def jpeg(c: int, size=(24, 18)) -> bytes:
    """A solid-colour JPEG of class ``c`` (colours of solid JPEGs survive within +-2)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour(c)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def noisy_png(seed: int, size=(21, 17)) -> bytes:
    """A random RGB image, losslessly stored: for exact pixel comparisons."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def image_folder(root: Path, per_class: int = 3, val_per_class: int = 1) -> Path:
    """``root/train/<wnid>/<wnid>_<n>.JPEG`` and ``root/val/<wnid>/...``, solid colours per class."""
    for c, wnid in enumerate(WNIDS):
        for n in range(per_class):
            write(root / "train" / wnid / f"{wnid}_{n}.JPEG", jpeg(c))
        for n in range(val_per_class):
            write(root / "val" / wnid / f"{wnid}_val{n}.JPEG", jpeg(c))
    return root


def val_truth(n_val: int) -> list[str]:
    """The wnid of each validation image ILSVRC2012_val_00000001..n_val (classes mixed up)."""
    return [WNIDS[(3 * i + 1) % len(WNIDS)] for i in range(n_val)]


def _tar_bytes(files: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def meta_mat() -> bytes:
    """A devkit meta.mat: the leaf synsets numbered as DEVKIT_IDS, plus one non-leaf synset."""
    from scipy.io import savemat

    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [(i, w, f"words of {w}", 0) for w, i in sorted(DEVKIT_IDS.items(), key=lambda kv: kv[1])]
    rows.append((1001, "n00001740", "entity", 3))
    synsets = np.array(rows, dtype=dtype)
    buffer = io.BytesIO()
    savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def devkit_files(n_val: int) -> dict[str, bytes]:
    truth = "".join(f"{DEVKIT_IDS[w]}\n" for w in val_truth(n_val))
    return {"ILSVRC2012_devkit_t12/data/meta.mat": meta_mat(),
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": truth.encode()}


def val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i + 1:08d}.JPEG"


def ilsvrc_tars(root: Path, per_class: int = 2, n_val: int = 5) -> Path:
    """The official files: train tar of per-class tars, flat val tar, devkit tar.gz."""
    inner = {
        f"{wnid}.tar": _tar_bytes({f"{wnid}_{n}.JPEG": jpeg(c) for n in range(per_class)})
        for c, wnid in enumerate(WNIDS)
    }
    write(root / "ILSVRC2012_img_train.tar", _tar_bytes(inner))
    truth = val_truth(n_val)
    write(root / "ILSVRC2012_img_val.tar",
          _tar_bytes({val_name(i): jpeg(WNIDS.index(w)) for i, w in enumerate(truth)}))
    write(root / "ILSVRC2012_devkit_t12.tar.gz", _tar_bytes(devkit_files(n_val), mode="w:gz"))
    return root


def ilsvrc_extracted(root: Path, per_class: int = 2, n_val: int = 5) -> Path:
    """The extracted forms: train/<wnid>/, a flat val/, the devkit folder."""
    for c, wnid in enumerate(WNIDS):
        for n in range(per_class):
            write(root / "train" / wnid / f"{wnid}_{n}.JPEG", jpeg(c))
    for i, w in enumerate(val_truth(n_val)):
        write(root / "val" / val_name(i), jpeg(WNIDS.index(w)))
    for name, data in devkit_files(n_val).items():
        write(root / name, data)
    return root


def kaggle(root: Path, per_class: int = 2, n_val: int = 5) -> Path:
    """Kaggle's layout: ILSVRC/Data/CLS-LOC/{train/<wnid>,val}, LOC_val_solution.csv."""
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    for c, wnid in enumerate(WNIDS):
        for n in range(per_class):
            write(data / "train" / wnid / f"{wnid}_{n}.JPEG", jpeg(c))
    rows = ["ImageId,PredictionString"]
    for i, w in enumerate(val_truth(n_val)):
        write(data / "val" / val_name(i), jpeg(WNIDS.index(w)))
        rows.append(f"{val_name(i)[:-5]},{w} 1 2 10 12 {w} 3 3 9 9")
    write(root / "LOC_val_solution.csv", ("\n".join(rows) + "\n").encode())
    return root


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_pixels(batch: int, n: int) -> np.ndarray:
    return np.random.default_rng(batch).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def cifar10_archive(path: Path, per_batch: int = 2) -> Path:
    """cifar-10-python.tar.gz with ``per_batch`` random images in each of the six batches."""
    files = {"cifar-10-batches-py/batches.meta":
             pickle.dumps({b"label_names": [n.encode() for n in CIFAR_NAMES]})}
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        pixels = cifar_pixels(b, per_batch)
        files[f"cifar-10-batches-py/{name}"] = pickle.dumps({
            b"data": pixels.transpose(0, 3, 1, 2).reshape(per_batch, -1),
            b"labels": [(b + i) % 10 for i in range(per_batch)],
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(per_batch)],
        })
    return write(path, _tar_bytes(files, mode="w:gz"))


def imagenette_archive(path: Path) -> Path:
    """imagenette2-320.tgz's layout: imagenette2-320/{train,val}/<wnid>/<file>.JPEG."""
    files = {}
    for c, wnid in enumerate(WNIDS[:2]):
        files[f"imagenette2-320/train/{wnid}/{wnid}_1.JPEG"] = jpeg(c, (30, 20))
        files[f"imagenette2-320/val/{wnid}/ILSVRC2012_val_0000000{c + 1}.JPEG"] = jpeg(c, (20, 30))
    files["imagenette2-320/noisy_imagenette.csv"] = b"path,noisy_labels_0\n"
    return write(path, _tar_bytes(files, mode="w:gz"))
