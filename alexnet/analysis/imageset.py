"""Small image sets held in memory as one uint8 tensor, for the CIFAR-10 experiments.

``load_images(data)`` takes ``cifar10`` (downloaded and prepared on first use), a prepared
dataset folder (``alexnet prepare``; its train split) or an image folder
(``ROOT/<class>/<image>``, or ``ROOT/train/<class>/<image>``), and returns every image at
``size`` x ``size`` (32 for CIFAR-10) with its label.

``load_train_test(data, test_data, holdout)`` adds a test set (section 3.3's experiment): a
prepared dataset's (and ``cifar10``'s) val split, which for CIFAR-10 is the official
``test_batch``; for an image folder, a second folder ``test_data/<class>/<image>`` with the
same classes; or, where asked, a random share ``holdout`` of the training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet import console
from alexnet.analysis.inputs import sample_indices
from alexnet.data.images import IMAGE_SUFFIXES
from alexnet.errors import UserError


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N, 3, S, S]
    labels: torch.Tensor  # int64 [N]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "ImageSet":
        indices = torch.as_tensor(indices)
        return ImageSet(self.images[indices], self.labels[indices], self.classes)

    def to(self, device) -> "ImageSet":
        return ImageSet(self.images.to(device), self.labels.to(device), self.classes)


def _to_array(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BOX)
    return np.asarray(image).transpose(2, 0, 1)


def _image_folder(root: Path, into_train: bool = True) -> tuple[list[tuple[Path, int]], list[str]] | None:
    if into_train and (root / "train").is_dir() and not (root / "meta.json").exists():
        root = root / "train"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    return (files, classes) if files else None


def _resolve(data: str) -> Path:
    path = Path(data)
    if not path.exists():
        from alexnet.data.prepare import ensure_prepared

        path = ensure_prepared(data)
    return path


def _prepared_reader(path: Path, split: str):
    from alexnet.data.dataset import PreparedDataset

    ds = PreparedDataset(path, split)
    return len(ds), ds.__getitem__, list(ds.class_names)


def _folder_reader(files: list[tuple[Path, int]]):
    def read(i):
        with Image.open(files[i][0]) as image:
            return image.convert("RGB"), files[i][1]

    return read


def _read_all(count: int, read, classes: list[str], size: int, limit: int | None, seed: int,
              name: str) -> ImageSet:
    arrays, labels = [], []
    picks = sample_indices(count, limit, np.random.default_rng(seed))
    for i in console.progress(picks, desc=f"reading {name}", unit="img"):
        image, label = read(int(i))
        arrays.append(_to_array(image, size))
        labels.append(label)
    return ImageSet(torch.from_numpy(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64), classes)


def load_images(data: str, size: int = 32, limit: int | None = None, seed: int = 0) -> ImageSet:
    """The training images of ``data`` (see the module doc); ``limit`` draws a random subset."""
    path = _resolve(data)
    if (path / "meta.json").exists():
        count, read, classes = _prepared_reader(path, "train")
    else:
        found = _image_folder(path) if path.is_dir() else None
        if found is None:
            raise UserError(f"{data}: neither 'cifar10', a prepared dataset (meta.json) nor an image "
                            "folder (ROOT/<class>/<image>)")
        files, classes = found
        count, read = len(files), _folder_reader(files)
    return _read_all(count, read, classes, size, limit, seed, path.name)


def is_prepared(data: str) -> bool:
    """Whether ``data`` names a prepared dataset (or a dataset name, prepared on first use)."""
    path = Path(data)
    return not path.exists() or (path / "meta.json").exists()


def load_folder_test(test_data: str, classes: list[str], size: int = 32) -> ImageSet:
    """The test images of ``test_data/<class>/<image>``, whose classes must be ``classes``."""
    path = Path(test_data)
    found = _image_folder(path, into_train=False) if path.is_dir() else None
    if found is None:
        raise UserError(f"--test-data {test_data}: not an image folder (FOLDER/<class>/<image>)")
    files, test_classes = found
    if test_classes != list(classes):
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise UserError(f"--test-data {test_data}: its classes differ from the training images' "
                        f"(only in training: {', '.join(only_train) or 'none'}; "
                        f"only in the test folder: {', '.join(only_test) or 'none'})")
    return _read_all(len(files), _folder_reader(files), test_classes, size, None, 0, path.name)


def load_prepared_test(data: str, size: int = 32) -> ImageSet:
    """The val split of a prepared dataset (for ``cifar10``: the official test_batch)."""
    path = _resolve(data)
    count, read, classes = _prepared_reader(path, "val")
    return _read_all(count, read, classes, size, None, 0, f"{path.name} (val)")


def hold_out(data: ImageSet, share: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """A random ``share`` of ``data`` as a test set: (the rest, the held-out part)."""
    if not 0 < share < 1:
        raise UserError(f"--holdout must lie between 0 and 1, not {share}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    cut = max(1, int(round(len(data) * share)))
    if cut >= len(data):
        raise UserError(f"--holdout {share} of {len(data)} images leaves none to train on")
    return data.subset(order[cut:]), data.subset(order[:cut])


def load_train_test(data: str, test_data: str | None = None, holdout: float | None = None,
                    limit: int | None = None, seed: int = 0, size: int = 32) -> tuple[ImageSet, ImageSet, str]:
    """Training and test images and where the test images came from (see the module doc).

    ``limit`` draws a random ``limit`` of the training images (before a holdout is cut from
    them); the test set is read whole.
    """
    if test_data is not None and holdout is not None:
        raise UserError("--test-data and --holdout: pass one of them, not both")
    if holdout is not None and not 0 < holdout < 1:
        raise UserError(f"--holdout must lie between 0 and 1, not {holdout}")
    prepared = is_prepared(data)
    if not prepared and test_data is None and holdout is None:
        raise UserError(f"{data} is an image folder: pass --test-data FOLDER (FOLDER/<class>/<image>) "
                        "or --holdout F (a share of the training images) for the test set")
    if prepared and test_data is not None:
        raise UserError(f"--test-data: {data} is a prepared dataset, whose val split is the test set; "
                        "pass --test-data only with an image folder")
    train = load_images(data, size=size, limit=limit, seed=seed)
    if holdout is not None:
        train, test = hold_out(train, holdout, seed)
        return train, test, f"a random {holdout:g} of the training images of {data}"
    if test_data is not None:
        return train, load_folder_test(test_data, train.classes, size), f"the image folder {test_data}"
    test = load_prepared_test(data, size)
    if test.classes != train.classes:
        raise UserError(f"{data}: its val split's classes differ from its train split's")
    return train, test, f"the val split of {data}" + (" (CIFAR-10's test_batch)" if data == "cifar10" else "")
