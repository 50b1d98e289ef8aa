"""Small image sets held in memory as one uint8 tensor, for the CIFAR-10 experiments.

``load_images(data)`` takes ``cifar10`` (downloaded and prepared on first use), a prepared
dataset folder (``alexnet prepare``; its train split) or an image folder
(``ROOT/<class>/<image>``, or ``ROOT/train/<class>/<image>``), and returns every image at
``size`` x ``size`` (32 for CIFAR-10) with its label.
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


def _to_array(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BOX)
    return np.asarray(image).transpose(2, 0, 1)


def _image_folder(root: Path) -> list[tuple[Path, int]] | None:
    if (root / "train").is_dir() and not (root / "meta.json").exists():
        root = root / "train"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    return (files, classes) if files else None


def load_images(data: str, size: int = 32, limit: int | None = None, seed: int = 0) -> ImageSet:
    """The training images of ``data`` (see the module doc); ``limit`` draws a random subset."""
    path = Path(data)
    if not path.exists():
        from alexnet.data.prepare import ensure_prepared

        path = ensure_prepared(data)
    if (path / "meta.json").exists():
        from alexnet.data.dataset import PreparedDataset

        ds = PreparedDataset(path, "train")
        count, read, classes = len(ds), ds.__getitem__, list(ds.class_names)
    else:
        found = _image_folder(path) if path.is_dir() else None
        if found is None:
            raise UserError(f"{data}: neither 'cifar10', a prepared dataset (meta.json) nor an image "
                            "folder (ROOT/<class>/<image>)")
        files, classes = found
        count = len(files)

        def read(i):
            with Image.open(files[i][0]) as image:
                return image.convert("RGB"), files[i][1]

    arrays, labels = [], []
    picks = sample_indices(count, limit, np.random.default_rng(seed))
    for i in console.progress(picks, desc=f"reading {path.name}", unit="img"):
        image, label = read(int(i))
        arrays.append(_to_array(image, size))
        labels.append(label)
    return ImageSet(torch.from_numpy(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64), classes)
