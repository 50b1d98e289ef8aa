"""`alexnet evaluate`: top-1 and top-5 error with the paper's test protocol (sections 4.1 and 6).

At test time the paper's network predicts from ten patches of each 256x256 image, the four corner
patches and the centre patch and their horizontal reflections, by averaging its softmax outputs over
the ten (section 4.1). Several networks are combined the same way, by averaging their softmax
outputs (section 6, Table 2's "5 CNNs").

The input pipeline is training's own: loader workers cut the crops out of the stored images
(:func:`alexnet.data.loader.make_loader`, ten crops in the order of
:data:`alexnet.data.transforms.TEN_CROP_ORDER`), and on the device
:class:`alexnet.data.transforms.DeviceTransform` subtracts the mean image cut at each crop's window
(mirrored with the crop), so that a crop is centred exactly as in training.

From a notebook::

    models = [alexnet.load_model(p) for p in ["run1/checkpoints/best.pt", "run2/checkpoints/best.pt"]]
    result = evaluate(models, PreparedDataset("data/imagenet", "val"), crops="ten")
    result["top1_error"], result["top5_error"]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet import console
from alexnet.classes import check_classes, class_lists
from alexnet.data.transforms import DeviceTransform
from alexnet.errors import UserError

CROPS = ("center", "ten")


# --- the ten patches (section 4.1) and the inputs of each model -------------------------------------


def input_transform(model: nn.Module, mean, image_size: tuple[int, int]) -> DeviceTransform:
    """The float half of ``model``'s test-time input pipeline: no colour noise, and

    - ``model.normalization == "mean_image"`` (the paper, section 2): raw 0-255 RGB minus ``mean``,
      the training set's mean image (``[H, W, 3]``, cut at each crop's window) or per-channel mean
      (``[3]``), on the 0-255 scale;
    - ``"imagenet"`` (torchvision's weights): 0-1 scale, then ImageNet's per-channel mean and std.
    """
    size = model.input_size
    if size > min(image_size):
        raise UserError(f"{model_name(model)} takes {size}x{size} inputs but the images are "
                        f"{image_size[0]}x{image_size[1]}")
    normalization = getattr(model, "normalization", "mean_image")
    if normalization == "mean_image":
        if mean is None:
            raise UserError(
                "the model subtracts its training set's mean image (section 2) and its file holds none: "
                "pass --mean with the mean.npy of the prepared training data"
            )
        mean = torch.as_tensor(mean, dtype=torch.float32)
        if mean.shape == (3,):
            mean = mean.expand(*image_size, 3)
        if tuple(mean.shape) != (*image_size, 3):
            raise UserError(f"the mean image is {'x'.join(map(str, mean.shape))} but the images are "
                            f"{image_size[0]}x{image_size[1]}x3")
    return DeviceTransform(mean, None, None, size, pca_std=0.0, normalization=normalization).eval()


def model_name(model: nn.Module) -> str:
    return getattr(model, "arch", type(model).__name__)


def model_mean(model: nn.Module, fallback) -> torch.Tensor | np.ndarray | None:
    """The mean image a model subtracts: its own (``model.mean``, from its file), else ``fallback``:
    a mean, or a function returning one, called only then (so that a dataset's mean.npy is needed
    only by a model that carries no mean and subtracts one)."""
    mean = getattr(model, "mean", None)
    if mean is not None or getattr(model, "normalization", "mean_image") != "mean_image":
        return mean
    return fallback() if callable(fallback) else fallback


# --- averaging softmax outputs over crops and networks ----------------------------------------------


@torch.inference_mode()
def class_probabilities(
    models: Sequence[nn.Module],
    transforms: Sequence[DeviceTransform],
    images: torch.Tensor,
    windows: torch.Tensor,
) -> torch.Tensor:
    """Softmax outputs ``[N, classes]``, averaged over the crops of each image (section 4.1) and
    over the models (an ensemble, section 6).

    ``images``: the loader's uint8 crops, ``[N, 3, S, S]`` or ``[N, V, 3, S, S]`` (V crops of each
    image), with their ``windows`` (``[N, 3]`` or ``[N, V, 3]``); ``transforms[i]`` turns them into
    the input of ``models[i]`` (see :func:`input_transform`) on the device its parameters live on.
    """
    total = None
    for model, transform in zip(models, transforms, strict=True):
        device = next(model.parameters()).device
        x = transform.to(device)(images.to(device, non_blocking=True), windows.to(device))
        logits = model(x.reshape(-1, *x.shape[-3:])).float()
        probs = torch.softmax(logits, dim=1).view(len(images), -1, logits.shape[1]).mean(dim=1)
        total = probs if total is None else total + probs.to(total.device)
    return total / len(models)


# --- metrics (section 2: "top-1 and top-5 error rates") ---------------------------------------------


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per image, whether the label is among the ``k`` most probable classes (all, if fewer than k)."""
    k = min(k, probs.shape[1])
    return (probs.topk(k, dim=1).indices == labels.view(-1, 1)).any(dim=1)


class ErrorCounter:
    """Accumulates top-1/top-5 hits and per-class top-1 hits over batches."""

    def __init__(self, num_classes: int):
        self.images = 0
        self.top1 = 0
        self.top5 = 0
        self.class_images = torch.zeros(num_classes, dtype=torch.int64)
        self.class_top1 = torch.zeros(num_classes, dtype=torch.int64)

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        probs, labels = probs.cpu(), labels.cpu()
        hit1 = topk_correct(probs, labels, 1)
        self.images += len(labels)
        self.top1 += int(hit1.sum())
        self.top5 += int(topk_correct(probs, labels, 5).sum())
        self.class_images += torch.bincount(labels, minlength=len(self.class_images))
        self.class_top1 += torch.bincount(labels[hit1], minlength=len(self.class_images))

    def result(self, class_ids: Sequence[str]) -> dict:
        """Errors in percent; per-class top-1 accuracy in percent keyed by class id (None for a class
        without images)."""
        if self.images == 0:
            raise UserError("the split holds no images")
        per_class = {
            name: (100.0 * int(hits) / int(n) if n else None)
            for name, hits, n in zip(class_ids, self.class_top1, self.class_images, strict=True)
        }
        return {
            "top1_error": 100.0 * (1 - self.top1 / self.images),
            "top5_error": 100.0 * (1 - self.top5 / self.images),
            "images": self.images,
            "per_class_accuracy": per_class,
        }


# --- evaluating on a prepared dataset ---------------------------------------------------------------


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_crops(crops: str) -> None:
    if crops not in CROPS:
        raise UserError(f"crops must be one of {', '.join(CROPS)}, not {crops!r}")


def predictions(
    models: Sequence[nn.Module],
    dataset,
    crops: str = "ten",
    batch_size: int = 128,
    device: str | torch.device | None = None,
    workers: int | None = None,
    names: Sequence[str] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``(probabilities [N, classes], labels [N])`` over every image of ``dataset`` once, in
    order: the softmax outputs averaged over the crops and the models. Arguments as :func:`evaluate`.
    """
    from alexnet.data.dataset import image_shape
    from alexnet.data.loader import make_loader

    if not models:
        raise UserError("no model to evaluate")
    check_crops(crops)
    names = list(names) if names is not None else [model_name(m) for m in models]
    check_classes(models, dataset, names)
    sizes = {model.input_size for model in models}
    if len(sizes) > 1:
        listed = ", ".join(f"{n} {m.input_size}" for n, m in zip(names, models))
        raise UserError(f"the models of an ensemble must take the same input size, not {listed}")
    device = torch.device(device) if device is not None else default_device()
    image_size = image_shape(dataset)
    transforms = [input_transform(m, model_mean(m, lambda: dataset.mean), image_size).to(device) for m in models]
    for model in models:
        model.to(device).eval()
    loader = make_loader(dataset, batch_size, train=False, crop_size=sizes.pop(), ten_crop=crops == "ten",
                         workers=workers, pin_memory=device.type == "cuda")
    for images, labels, windows in loader.to(device):  # staged on the device a batch ahead
        yield class_probabilities(models, transforms, images, windows).cpu(), labels.cpu()


def evaluate(
    models: nn.Module | Sequence[nn.Module],
    dataset,
    crops: str = "ten",
    batch_size: int = 128,
    device: str | torch.device | None = None,
    workers: int | None = None,
    progress: bool = True,
    names: Sequence[str] | None = None,
) -> dict:
    """Top-1/top-5 error (percent) of one model or an ensemble, every image of ``dataset`` once.

    ``dataset``: a :class:`alexnet.data.dataset.PreparedDataset` (or anything with its ``read``,
    ``labels``, ``classes``, ``mean`` and ``len``). ``crops``: ``"ten"`` (section 4.1) or
    ``"center"``. The models are put in evaluation mode on ``device`` (default: cuda, else mps, else
    cpu); those of an ensemble must take the same input size. ``workers``: decoding processes
    (default: one per core). ``names`` name the models in error messages (default: their
    architecture). Returns ``top1_error``, ``top5_error``, ``images``, ``crops``, ``models`` and
    ``per_class_accuracy`` (top-1, percent, keyed by class id: the wnid for ImageNet).
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    class_ids = class_lists(dataset)[1]
    counter = ErrorCounter(len(class_ids))
    bar = console.progress(total=len(dataset), unit="img", desc=f"evaluate ({crops})", disable=not progress)
    for probs, labels in predictions(models, dataset, crops, batch_size, device, workers, names):
        counter.update(probs, labels)
        bar.set_postfix(top1_error=f"{100 * (1 - counter.top1 / counter.images):.2f}%", refresh=False)
        bar.update(len(labels))
    bar.close()
    return {**counter.result(class_ids), "crops": crops, "models": len(models)}


# --- the command line -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from alexnet.data.dataset import PreparedDataset
    from alexnet.data.prepare import ensure_prepared

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {args.batch_size}")
    models = [load_checkpoint(path) for path in args.checkpoints]
    dataset = PreparedDataset(ensure_prepared(args.data), args.split)
    result = evaluate(
        models, dataset, crops=args.crops, batch_size=args.batch_size, device=args.device,
        workers=args.workers, names=args.checkpoints,
    )
    result["checkpoints"] = list(args.checkpoints)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_result(result))
    return 0


def format_result(result: dict) -> str:
    what = f"ensemble of {result['models']} models" if result["models"] > 1 else "1 model"
    crops = "ten crops" if result["crops"] == "ten" else "centre crop"
    return (
        f"top-1 error {result['top1_error']:.2f}%  top-5 error {result['top5_error']:.2f}%  "
        f"on {result['images']} images ({what}, {crops})"
    )


def load_checkpoint(path: str) -> nn.Module:
    """:func:`alexnet.load_model`, with the mean image of the network's training set as ``model.mean``
    (see :func:`training_mean`; None when unknown)."""
    from alexnet import load_model

    model = load_model(path)
    if getattr(model, "mean", None) is None and getattr(model, "normalization", None) == "mean_image":
        # a second read of the file, memory-mapped: only the small entries are read
        model.mean = training_mean(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
    return model


def training_mean(record: dict) -> torch.Tensor | None:
    """The training set's mean image of a model file or checkpoint: its ``mean`` entry (a float32
    ``[256, 256, 3]`` tensor on the 0-255 scale), else the ``mean.npy`` of the prepared data its run
    trained on (``config["data"]``: a folder, or a named dataset in the default cache) when that is
    still on this machine."""
    if record.get("mean") is not None:
        return record["mean"]
    data = (record.get("config") or {}).get("data")
    if not data:
        return None
    from alexnet.data.download import DATASETS, cache_root

    for folder in [Path(data)] + ([cache_root() / data] if data in DATASETS else []):
        if (folder / "mean.npy").is_file():
            return torch.from_numpy(np.load(folder / "mean.npy", allow_pickle=False))
    return None
