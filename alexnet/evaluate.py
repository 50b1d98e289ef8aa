"""`alexnet evaluate`: top-1 and top-5 error with the paper's test protocol (sections 4.1 and 6).

At test time the paper's network predicts from ten patches of each 256x256 image, the four corner
patches and the centre patch and their horizontal reflections, by averaging its softmax outputs over
the ten (section 4.1). Several networks are combined the same way, by averaging their softmax
outputs (section 6, Table 2's "5 CNNs").

The softmax outputs come from :func:`alexnet.inference.predictions`, through training's own input
pipeline (ten crops in the order of :data:`alexnet.data.transforms.TEN_CROP_ORDER`, each centred
exactly as in training); this module counts their errors and prints them.

From a notebook::

    models = [alexnet.load_model(p) for p in ["run1/checkpoints/best.pt", "run2/checkpoints/best.pt"]]
    result = evaluate(models, PreparedDataset("data/imagenet", "val"), crops="ten")
    result["top1_error"], result["top5_error"]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch
from torch import nn

from alexnet import console
from alexnet.classes import class_lists
from alexnet.errors import UserError
from alexnet.inference import load_trained_model, predictions


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
    models = [load_trained_model(path) for path in args.checkpoints]
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
