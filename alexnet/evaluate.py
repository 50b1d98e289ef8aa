"""`alexnet evaluate`: top-1 and top-5 error with the paper's test protocol (sections 4.1 and 6).

At test time the network "makes a prediction by extracting five 224x224 patches (the four corner
patches and the center patch) as well as their horizontal reflections, and averaging the
predictions made by the softmax layer on the ten patches" (section 4.1). Several networks are
combined the same way, by averaging their softmax outputs (section 6, Table 2's "5 CNNs").

The dataset hands over whole 256x256 uint8 images (section 2); the crops, the reflections and the
subtraction of the mean image are batch operations on the device. Subtracting the mean image before
cropping equals cutting the mean at each crop's window, so every crop is centred exactly as in
training.

From a notebook::

    models = [alexnet.load_model(p) for p in ["run1/checkpoints/best.pt", "run2/checkpoints/best.pt"]]
    result = evaluate(models, PreparedDataset("data/imagenet", "val"), crops="ten")
    result["top1_error"], result["top5_error"]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from alexnet.errors import UserError

CROPS = ("center", "ten")

# torchvision's preprocessing for its published weights (normalization="imagenet"): 0-1 scale, then
# per-channel mean and standard deviation of ImageNet's training pixels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- the ten patches (section 4.1) ----------------------------------------------------------------


def crop_windows(height: int, width: int, size: int, crops: str) -> list[tuple[int, int, bool]]:
    """The (top, left, flipped) windows of the test-time crops of a ``height`` x ``width`` image.

    ``"center"``: the central ``size`` x ``size`` patch. ``"ten"``: the centre patch and the four
    corner patches (top-left, top-right, bottom-left, bottom-right), then the same five mirrored.
    """
    if crops not in CROPS:
        raise UserError(f"--crops must be one of {', '.join(CROPS)}, not {crops!r}")
    if size > min(height, width):
        raise UserError(f"the model takes {size}x{size} inputs but the images are {height}x{width}")
    bottom, right = height - size, width - size
    center = (bottom // 2, right // 2)
    if crops == "center":
        return [(*center, False)]
    five = [center, (0, 0), (0, right), (bottom, 0), (bottom, right)]
    return [(top, left, flipped) for flipped in (False, True) for top, left in five]


def take_crops(images: torch.Tensor, size: int, crops: str) -> torch.Tensor:
    """``[N, C, H, W]`` images -> ``[N * crops, C, size, size]``; the crops of one image are adjacent."""
    windows = crop_windows(images.shape[-2], images.shape[-1], size, crops)
    patches = []
    for top, left, flipped in windows:
        patch = images[..., top : top + size, left : left + size]
        patches.append(patch.flip(-1) if flipped else patch)
    return torch.stack(patches, dim=1).flatten(0, 1)


# --- what each model expects as input ---------------------------------------------------------------


def normalize(images: torch.Tensor, model: nn.Module, mean: torch.Tensor | None) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` images -> the float input ``model`` was trained on.

    ``model.normalization == "mean_image"`` (the paper, section 2): raw 0-255 RGB minus ``mean``, the
    training set's mean image (``[H, W, 3]``) or per-channel mean (``[3]``), on the 0-255 scale.
    ``"imagenet"`` (torchvision's weights): 0-1 scale, then ImageNet's per-channel mean and std.
    """
    x = images.float()
    kind = getattr(model, "normalization", "mean_image")
    if kind == "imagenet":
        m = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
        s = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
        return (x / 255 - m) / s
    if kind != "mean_image":
        raise UserError(f"unknown normalization {kind!r} of model {getattr(model, 'arch', '?')}")
    if mean is None:
        raise UserError(
            "the model subtracts the training set's mean image (section 2), but neither the model file "
            "nor the data holds one: pass the mean.npy of the prepared training data (--mean)"
        )
    mean = mean.to(x.device, torch.float32)
    if mean.dim() == 1:
        return x - mean.view(3, 1, 1)
    if tuple(mean.shape[:2]) != tuple(x.shape[-2:]):
        raise UserError(
            f"the mean image is {mean.shape[0]}x{mean.shape[1]} but the images are {x.shape[-2]}x{x.shape[-1]}"
        )
    return x - mean.permute(2, 0, 1)


def model_mean(model: nn.Module, fallback: torch.Tensor | np.ndarray | None) -> torch.Tensor | None:
    """The mean image a model subtracts: its own (``model.mean``, from its file), else ``fallback``."""
    mean = getattr(model, "mean", None)
    if mean is None:
        mean = fallback
    return None if mean is None else torch.as_tensor(mean, dtype=torch.float32)


# --- averaging softmax outputs over crops and networks ----------------------------------------------


@torch.inference_mode()
def class_probabilities(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    crops: str = "ten",
    means: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Softmax outputs ``[N, classes]`` for uint8 ``[N, 3, H, W]`` images, averaged over the crops
    (section 4.1) and over the models (an ensemble, section 6).

    ``means[i]`` is what ``models[i]`` subtracts (see :func:`normalize`). Each model gets the crops
    of its own ``input_size`` on the device its parameters live on.
    """
    means = list(means) if means is not None else [None] * len(models)
    total = None
    for model, mean in zip(models, means, strict=True):
        device = next(model.parameters()).device
        x = normalize(images.to(device, non_blocking=True), model, mean)
        x = take_crops(x, model.input_size, crops)
        probs = torch.softmax(model(x).float(), dim=1)
        probs = probs.view(images.shape[0], -1, probs.shape[1]).mean(dim=1)
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

    def result(self, class_names: Sequence[str]) -> dict:
        """Errors in percent; per-class top-1 accuracy in percent (None for a class without images)."""
        if self.images == 0:
            raise UserError("the split holds no images")
        per_class = {
            name: (100.0 * int(hits) / int(n) if n else None)
            for name, hits, n in zip(class_names, self.class_top1, self.class_images, strict=True)
        }
        return {
            "top1_error": 100.0 * (1 - self.top1 / self.images),
            "top5_error": 100.0 * (1 - self.top5 / self.images),
            "images": self.images,
            "per_class_accuracy": per_class,
        }


# --- evaluating on a prepared dataset ---------------------------------------------------------------


def check_classes(models: Sequence[nn.Module], classes: Sequence[str], names: Sequence[str]) -> None:
    """Every model must predict exactly the dataset's classes, in the same order.

    ``names[i]`` names ``models[i]`` in the message (its file). A model without class names must at
    least have as many outputs as the dataset has classes.
    """
    for model, name in zip(models, names, strict=True):
        model_classes = getattr(model, "class_names", None)
        if model_classes is None:
            outputs = num_outputs(model)
            if outputs != len(classes):
                raise UserError(f"{name} has {outputs} outputs but the data has {len(classes)} classes")
            continue
        if list(model_classes) != list(classes):
            raise UserError(f"{name}: {class_list_difference(list(model_classes), list(classes))}")


def class_list_difference(model: list[str], data: list[str]) -> str:
    if len(model) != len(data):
        return f"the model knows {len(model)} classes but the data has {len(data)}"
    i = next(i for i, (a, b) in enumerate(zip(model, data)) if a != b)
    return f"the model's classes differ from the data's: class {i} is {model[i]!r} in the model, {data[i]!r} in the data"


def num_outputs(model: nn.Module) -> int:
    """The number of classes a model predicts (the size of its last layer's output)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def evaluate(
    models: nn.Module | Sequence[nn.Module],
    dataset,
    crops: str = "ten",
    batch_size: int = 128,
    device: str | torch.device | None = None,
    workers: int = 2,
    progress: bool = True,
    names: Sequence[str] | None = None,
) -> dict:
    """Top-1/top-5 error (percent) of one model or an ensemble on every image of ``dataset`` once.

    ``dataset``: a :class:`alexnet.data.dataset.PreparedDataset` (or anything with ``ds[i] ->
    (uint8 HxWx3, class index)``, ``len``, ``classes`` and ``mean``). The models are put in
    evaluation mode on ``device`` (default: cuda, else mps, else cpu). Returns ``top1_error``,
    ``top5_error``, ``images``, ``crops``, ``models`` and ``per_class_accuracy``. ``names`` name
    the models in error messages (default: their architecture).
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    if not models:
        raise UserError("no model to evaluate")
    names = names or [getattr(m, "arch", f"model {i}") for i, m in enumerate(models)]
    check_classes(models, dataset.classes, names)
    device = torch.device(device) if device is not None else default_device()
    for model in models:
        model.to(device).eval()
    means = [model_mean(model, getattr(dataset, "mean", None)) for model in models]
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    counter = ErrorCounter(len(dataset.classes))
    bar = tqdm(total=len(dataset), unit="img", desc=f"evaluate ({crops})", disable=not progress)
    for images, labels in loader:
        images = torch.as_tensor(images).permute(0, 3, 1, 2)  # [N, H, W, 3] -> [N, 3, H, W]
        counter.update(class_probabilities(models, images, crops, means), torch.as_tensor(labels))
        bar.update(len(labels))
        bar.set_postfix(top1_error=f"{100 * (1 - counter.top1 / counter.images):.2f}%")
    bar.close()
    return {**counter.result(dataset.classes), "crops": crops, "models": len(models)}


# --- the command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoints", nargs="+", metavar="CHECKPOINT",
        help="model file(s) or training checkpoint(s); several are an ensemble that averages their "
        "softmax outputs (Table 2's '5 CNNs')",
    )
    parser.add_argument("--data", required=True, metavar="PREPARED", help="a dataset made by `alexnet prepare`")
    parser.add_argument("--split", default="val", help="the split to evaluate on (default: val)")
    parser.add_argument(
        "--crops", choices=CROPS, default="ten",
        help="ten: the paper's protocol, the softmax averaged over the four corner and centre patches "
        "and their reflections (section 4.1; default); center: the central patch only (faster)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch (default 128; x10 crops)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: cuda, else mps, else cpu)")
    parser.add_argument("--workers", type=int, default=2, help="data loading processes (default 2)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    from alexnet.data.dataset import PreparedDataset

    models = [load_checkpoint(path) for path in args.checkpoints]
    dataset = PreparedDataset(args.data, args.split)
    result = evaluate(
        models, dataset, crops=args.crops, batch_size=args.batch_size, device=args.device,
        workers=args.workers, progress=sys.stderr.isatty(), names=args.checkpoints,
    )
    result["checkpoints"] = list(args.checkpoints)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_result(result))
    return 0


def format_result(result: dict) -> str:
    what = "ensemble of %d models" % result["models"] if result["models"] > 1 else "1 model"
    crops = "ten crops" if result["crops"] == "ten" else "centre crop"
    return (
        f"top-1 error {result['top1_error']:.2f}%  top-5 error {result['top5_error']:.2f}%  "
        f"on {result['images']} images ({what}, {crops})"
    )


def load_checkpoint(path: str) -> nn.Module:
    """:func:`alexnet.load_model` with a clear message for a missing or unreadable file."""
    from alexnet import load_model

    try:
        return load_model(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such model file") from None
