"""The tests' one kit: tiny networks, datasets in every source layout ``alexnet prepare`` reads, a
prepared-dataset maker, an in-memory stand-in for ``PreparedDataset``, and the command in-process.

Imported one way only: ``from tests import kit`` (or ``from tests.kit import ...``). Importing it
changes nothing; the fixtures that change process state (``tiny_net``: the ``tiny-test`` network in
the registry; ``fake_torchvision``: a stand-in for torchvision's decoder) are in ``tests/conftest.py``.

``python -m tests.kit train --arch tiny-test ...`` is ``alexnet train`` with ``TinyNet`` registered
as ``tiny-test``: the same loop, data, checkpoints and signals, at a fraction of the cost.
Environment knobs for the tests: TINY_SLEEP (seconds per training forward, so that a test can kill
a run mid-way), TINY_SIGNAL (``SIGKILL@7``: the process sends itself that signal at its 7th
training forward, so that a test kills a run at a known step), TINY_FINAL (a folder where every
process saves its final weights).

Images of class ``c`` are of the colour ``colour(c) = (40 * c + 20, 200 - 30 * c, 90)``, so that a
test can tell from prepared pixels which class an image came from.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import sys
import tarfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

# --- networks -----------------------------------------------------------------------------------

built: list[nn.Module] = []  # every TinyNet built, so that main() can save the final weights


class TinyNet(nn.Module):
    """conv-ReLU-pool-dropout-linear on 16x16 inputs; ``nan_after``: the forward after that many
    training forwards returns NaN (to test the stop on a non-finite loss)."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, nan_after: int = -1):
        super().__init__()
        self.input_size, self.normalization = 16, "mean_image"
        self.options = dict(num_classes=num_classes, dropout=dropout, nan_after=nan_after)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * 4 * 4, num_classes)
        self.forwards = 0
        built.append(self)

    def forward(self, x):
        if self.training:
            self.forwards += 1
            time.sleep(float(os.environ.get("TINY_SLEEP", "0")))
            name, _, at = os.environ.get("TINY_SIGNAL", "").partition("@")
            if name and self.forwards == int(at):
                os.kill(os.getpid(), getattr(signal, name))
        y = self.fc(self.drop(torch.flatten(nn.functional.max_pool2d(torch.relu(self.conv(x / 64)), 2), 1)))
        if self.training and self.forwards == self.options["nan_after"] + 1:
            y = y * float("nan")
        return y


# seconds a test waits for a process it started before it calls the process stuck: a guard
# against hangs only, never a speed limit, so long enough for a machine whose cores other jobs
# keep busy (a 60 s guard once failed a resume test on such a machine while nothing was wrong)
HANG_GUARD_S = 600

TINY_NET = "tiny-test"


def register_tiny_net() -> None:
    """Put ``TinyNet`` in the model registry as ``tiny-test`` (once per process)."""
    from alexnet.registry import list_models, register_model

    if TINY_NET not in list_models():
        register_model(TINY_NET, TinyNet, "conv-ReLU-pool-dropout-linear on 16x16 inputs (tests only)")


TINY = dict(input_size=67, channels=(8, 8, 8, 8, 8), fc_width=16)  # 67: the smallest input pool5 keeps


def tiny_alexnet(num_classes: int = 3, seed: int = 0, **options) -> nn.Module:
    """The paper's network, shrunk (``TINY``, overridden by ``options``), with PyTorch's default
    initialisation: outputs far from uniform, so that rankings do not hinge on rounding. In eval
    mode; carries class names ``c0, c1, ...``."""
    from alexnet import build_model

    torch.manual_seed(seed)
    model = build_model("alexnet", num_classes=num_classes, **(TINY | options))
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
    model.class_names = [f"c{i}" for i in range(num_classes)]
    return model.eval()


# --- image files and source layouts --------------------------------------------------------------

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


def image_folder(root: Path, per_class: int = 3, val_per_class: int = 1, classes=WNIDS, size=(24, 18),
                 noise: int = 0, suffix: str = ".JPEG") -> Path:
    """``root/train/<class>/<class>_<n><suffix>`` and ``root/val/<class>/<class>_val<n><suffix>``:
    class ``c`` in ``colour(c)``, plus uniform noise of +-``noise`` per pixel (0: solid colours);
    ``.png`` files are lossless, anything else a JPEG."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c, name in enumerate(classes):
            for n in range(count):
                if not noise:
                    data = jpeg(c, size)
                else:
                    pixels = np.array(colour(c)) + rng.integers(-noise, noise + 1, (size[1], size[0], 3))
                    buffer = io.BytesIO()
                    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                        buffer, "PNG" if suffix.lower() == ".png" else "JPEG", quality=90)
                    data = buffer.getvalue()
                middle = "_val" if split == "val" else "_"
                write(root / split / name / f"{name}{middle}{n}{suffix}", data)
    return root


def make_prepared(root: Path, classes=("c0", "c1", "c2"), per_class=(16, 4), size: int = 80,
                  encoding: str = "jpeg", workers: int = 1) -> Path:
    """``alexnet prepare`` at ``size`` over ``root/images``, an image folder of noisy colour PNGs
    (``per_class``: training and validation images per class) a little larger than ``size``; returns
    the prepared folder ``root/prepared``."""
    from alexnet.data.prepare import prepare

    image_folder(root / "images", *per_class, classes=classes, size=(size + 14, size + 8), noise=40,
                 suffix=".png")
    return prepare(root / "images", root / "prepared", size=size, encoding=encoding, workers=workers,
                   progress=False)


SOLID_SIZE = 16  # the size ``run_prepare`` stores images at: tiny keeps the prepare tests fast


def run_prepare(source, out, **options) -> Path:
    """``prepare`` at SOLID_SIZE with two workers, quietly; ``options`` override those."""
    from alexnet.data.prepare import prepare

    return prepare(source, out, **{"size": SOLID_SIZE, "workers": 2, "progress": False, **options})


def solid_class(image: np.ndarray) -> int:
    """The class whose colour (``colour``) a prepared solid image has."""
    rgb = image.reshape(-1, 3).mean(axis=0)
    return int(np.argmin([np.abs(rgb - colour(c)).max() for c in range(len(WNIDS))]))


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


# --- prepared data in memory ---------------------------------------------------------------------

class StandInDataset:
    """An in-memory stand-in for ``alexnet.data.dataset.PreparedDataset`` (same interface: ``read``,
    ``extension``, ``[i]``, ``labels``, ``classes``, ``mean``, ``pca_eigvals``, ``pca_eigvecs``,
    ``len``), so that loading and evaluation tests need no prepared folder on disk. Random images;
    labels cycle through the classes; ``mean`` is random per pixel, not the images' own mean, so
    that a wrong window shows."""

    def __init__(self, count: int = 24, size: int = 48, num_classes: int = 3, encoding: str = "npy",
                 seed: int = 0):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
        self.labels = (np.arange(count) % num_classes).astype(np.int64)
        self.classes = [f"c{c}" for c in range(num_classes)]
        self.mean = rng.uniform(60, 200, (size, size, 3)).astype(np.float32)
        pixels = self.images.reshape(-1, 3).astype(np.float64)
        self.pca_eigvals, self.pca_eigvecs = np.linalg.eigh(np.cov(pixels, rowvar=False))
        self.root = "stand-in"
        self.extension = "npy" if encoding == "npy" else "jpg"
        self.blobs = [self.encode(image, encoding) for image in self.images]

    @staticmethod
    def encode(image, encoding: str) -> bytes:
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


# --- run folders and the command -----------------------------------------------------------------

def save_run(run_dir: Path, model=None, class_names=("c0", "c1", "c2")) -> Path:
    """A run folder holding only ``checkpoints/best.pt`` (by default: a tiny network of the classes of
    ``make_prepared``'s dataset)."""
    import alexnet

    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    model = model or tiny_alexnet(len(class_names))
    alexnet.save_model(model, run_dir / "checkpoints" / "best.pt", class_names=list(class_names))
    return run_dir


def save_ten_class_run(run_dir: Path) -> Path:
    """A run folder whose network knows 10 classes, none of them a three-class dataset's."""
    return save_run(run_dir, tiny_alexnet(10), [f"class {i}" for i in range(10)])


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def alexnet_command(capsys, *args) -> Ran:
    """Run ``alexnet ARGS...`` in this process (no interpreter start-up); what it printed alone."""
    from alexnet.cli import main

    capsys.readouterr()
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Ran(status, captured.out, captured.err)


# --- processes (Linux's /proc) ----------------------------------------------------------------------

def process_state(pid: int) -> str:
    """The process's state letter from /proc (R, S, T when stopped, Z a zombie); "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (children, their children...), from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass  # gone meanwhile
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def main(argv: list[str]) -> int:
    """``alexnet ARGV...`` with ``tiny-test`` registered; saves the last TinyNet's weights to TINY_FINAL."""
    from alexnet.cli import main as cli_main

    register_tiny_net()
    status = cli_main(argv)
    final = os.environ.get("TINY_FINAL")
    if final and built:
        os.makedirs(final, exist_ok=True)
        torch.save(built[-1].state_dict(), os.path.join(final, f"rank{os.environ.get('RANK', '0')}.pt"))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
