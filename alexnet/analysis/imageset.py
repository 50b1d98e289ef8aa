"""Small image sets in memory as one uint8 tensor, for the CIFAR-10 experiments."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet import console
from alexnet.analysis.inputs import sample_indices
from alexnet.data.images import FILE_BYTES_PER_PIXEL, IMAGE_SUFFIXES, BadImage, check_pixels, open_image, to_rgb
from alexnet.data.source_files import class_files, read_regular, subdirs
from alexnet.defaults import MAX_PIXELS
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


def _source(path: Path, split: str = "train", into_train: bool = True):
    """``(count, read(i) -> (image, label), classes)`` of a prepared dataset's ``split`` or of an image
    folder (``ROOT/train`` first when ``into_train``); None when ``path`` is neither."""
    if (path / "meta.json").exists():
        from alexnet.data.dataset import PreparedDataset

        ds = PreparedDataset(path, split)
        return len(ds), ds.__getitem__, list(ds.class_names)  # images as arrays
    if not path.is_dir():
        return None
    if into_train and (path / "train").is_dir():
        path = path / "train"
    classes = subdirs(path)
    index = {name: i for i, name in enumerate(classes)}
    files = [(file, index[name]) for name, _, file, skipped in class_files(path)
             if skipped is None and file.suffix.lower() in IMAGE_SUFFIXES]

    def read(i):  # as `alexnet prepare` reads a source image: bounded, by content, any mode to RGB
        file, label = files[i]
        try:
            image = open_image(read_regular(file, FILE_BYTES_PER_PIXEL * MAX_PIXELS))
            check_pixels(image, MAX_PIXELS)
            image = to_rgb(image)
            image.load()
        except (BadImage, OSError) as err:
            raise UserError(f"{file}: not a readable image ({err})") from None
        return image, label

    return (len(files), read, classes) if files else None


def _read_all(source, size: int, limit: int | None, seed: int, name: str) -> ImageSet:
    count, read, classes = source
    arrays, labels = [], []
    for i in console.progress(sample_indices(count, limit, np.random.default_rng(seed)), desc=f"reading {name}",
                              unit="img"):
        image, label = read(int(i))
        image = (Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BOX)
        arrays.append(np.asarray(image).transpose(2, 0, 1))
        labels.append(label)
    return ImageSet(torch.from_numpy(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64), classes)


def _resolve(data: str) -> Path:
    path = Path(data)
    if not path.exists():
        from alexnet.data.prepare import ensure_prepared

        path = ensure_prepared(data)
    return path


def load_images(data: str, size: int = 32, limit: int | None = None, seed: int = 0) -> ImageSet:
    """The training images of ``data``; ``limit`` draws a random subset."""
    path = _resolve(data)
    if (source := _source(path)) is None:
        raise UserError(f"{data}: neither 'cifar10', a prepared dataset (meta.json) nor an image "
                        "folder (ROOT/<class>/<image>)")
    return _read_all(source, size, limit, seed, path.name)


def load_train_test(data: str, test_data: str | None = None, holdout: float | None = None,
                    limit: int | None = None, seed: int = 0, size: int = 32) -> tuple[ImageSet, ImageSet, str]:
    """Training and test images (section 3.3) and where the test images came from: the val split, the image
    folder ``test_data`` or a share ``holdout`` of the training images (``limit`` of them, drawn at random)."""
    if test_data is not None and holdout is not None:
        raise UserError("--test-data and --holdout: pass one of them, not both")
    if holdout is not None and not 0 < holdout < 1:
        raise UserError(f"--holdout must lie between 0 and 1, not {holdout}")
    prepared = not Path(data).exists() or (Path(data) / "meta.json").exists()  # or a name, prepared on first use
    if not prepared and test_data is None and holdout is None:
        raise UserError(f"{data} is an image folder: pass --test-data FOLDER (FOLDER/<class>/<image>) "
                        "or --holdout F (a share of the training images) for the test set")
    if prepared and test_data is not None:
        raise UserError(f"--test-data: {data} is a prepared dataset, whose val split is the test set; "
                        "pass --test-data only with an image folder")
    train = load_images(data, size=size, limit=limit, seed=seed)
    if holdout is not None:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        cut = max(1, int(round(len(train) * holdout)))
        if cut >= len(train):
            raise UserError(f"--holdout {holdout} of {len(train)} images leaves none to train on")
        return (train.subset(order[cut:]), train.subset(order[:cut]),
                f"a random {holdout:g} of the training images of {data}")
    if test_data is not None:
        path, where, name = Path(test_data), f"--test-data {test_data}", "test folder"
        source, described = _source(path, into_train=False), f"the image folder {test_data}"
        if source is None:
            raise UserError(f"{where}: not an image folder (FOLDER/<class>/<image>)")
    else:
        path, where, name = _resolve(data), data, "val split"
        source = _source(path, "val")
        described = f"the val split of {data}" + (" (CIFAR-10's test_batch)" if data == "cifar10" else "")
    if source[2] != train.classes:
        pairs = [(train.classes, source[2]), (source[2], train.classes)]
        only = [", ".join(sorted(set(a) - set(b))) or "none" for a, b in pairs]  # (only in training, only in test)
        raise UserError(f"{where}: its {name}'s classes differ from the training images' "
                        f"(only in training: {only[0]}; only in the {name}: {only[1]})")
    return train, _read_all(source, size, None, 0, f"{path.name} ({name})"), described
