"""`alexnet predict`: the most probable classes of images, as in the paper's Figure 4 (left).

Each image gets the paper's preprocessing (section 2): its shorter side rescaled to 256, the
central 256x256 patch cut out, the training set's mean image subtracted; then the centre crop or
the ten crops of section 4.1, whose softmax outputs are averaged. Models converted from torchvision's
weights (``normalization="imagenet"``) get torchvision's preprocessing instead: the same resize and
centre crop (bilinear, as torchvision), then ImageNet's per-channel mean and standard deviation.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from alexnet.errors import UserError
from alexnet.evaluate import CROPS, class_probabilities, default_device, load_checkpoint, model_mean

IMAGE_SIZE = 256  # section 2: shorter side to 256, then the central 256x256 patch
BATCH = 32  # images per forward pass (x10 with ten crops)


def load_image(path: str | Path, resample: int = Image.Resampling.BILINEAR) -> np.ndarray:
    """The central 256x256 patch of an image file, after rescaling its shorter side to 256 (section 2).

    Any format and mode PIL reads (CMYK, greyscale, PNG under a .JPEG name) becomes RGB. Returns a
    uint8 array ``[256, 256, 3]``. The centre is rounded as torchvision's ``CenterCrop`` rounds it.
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: not an image PIL can read ({err})") from None
    w, h = img.size
    size = (IMAGE_SIZE, int(IMAGE_SIZE * h / w)) if w <= h else (int(IMAGE_SIZE * w / h), IMAGE_SIZE)
    img = img.resize(size, resample)
    left, top = round((size[0] - IMAGE_SIZE) / 2), round((size[1] - IMAGE_SIZE) / 2)
    return np.asarray(img.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE)))


def load_mean(path: str | Path) -> torch.Tensor:
    """A mean image from ``mean.npy`` or from a prepared dataset folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / "mean.npy"
    try:
        mean = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"--mean {path}: no such file") from None
    except ValueError as err:
        raise UserError(f"--mean {path}: not a .npy array ({err})") from None
    if mean.shape not in ((IMAGE_SIZE, IMAGE_SIZE, 3), (3,)):
        raise UserError(f"--mean {path}: expected a 256x256x3 mean image or 3 channel means, got shape {mean.shape}")
    return torch.from_numpy(mean.astype(np.float32))


def predict(
    model: torch.nn.Module,
    paths: Sequence[str | Path],
    crops: str = "ten",
    top: int = 5,
    mean: torch.Tensor | None = None,
    device: str | torch.device | None = None,
) -> list[dict]:
    """The ``top`` most probable classes of each image: ``[{"image", "predictions": [{"class",
    "index", "probability"}, ...]}]``, most probable first. ``mean`` is used when the model file
    holds no mean image of its own."""
    device = torch.device(device) if device is not None else default_device()
    model.to(device).eval()
    mean = model_mean(model, mean)
    names = getattr(model, "class_names", None)
    results = []
    for start in range(0, len(paths), BATCH):
        chunk = paths[start : start + BATCH]
        images = torch.from_numpy(np.stack([load_image(p) for p in chunk])).permute(0, 3, 1, 2)
        probs = class_probabilities([model], images, crops, [mean]).cpu()
        values, indices = probs.topk(min(top, probs.shape[1]), dim=1)
        for path, p, i in zip(chunk, values.tolist(), indices.tolist()):
            predictions = [
                {"class": names[c] if names else f"class {c}", "index": c, "probability": q} for q, c in zip(p, i)
            ]
            results.append({"image": str(path), "predictions": predictions})
    return results


def format_predictions(results: list[dict]) -> str:
    """One block per image: its path, then one line per class with its probability in percent."""
    lines = []
    for result in results:
        lines.append(result["image"])
        for rank, p in enumerate(result["predictions"], 1):
            lines.append(f"  {rank}. {100 * p['probability']:6.2f}%  {p['class']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a model file or training checkpoint")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")
    parser.add_argument(
        "--crops", choices=CROPS, default="ten",
        help="ten: average the softmax over the four corner and centre patches and their reflections "
        "(section 4.1; default); center: the central patch only",
    )
    parser.add_argument("--top", type=int, default=5, help="how many classes to show per image (default 5)")
    parser.add_argument(
        "--mean", metavar="FILE",
        help="the training set's mean image (mean.npy, or the prepared dataset folder holding it), "
        "for a model file that holds none",
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: cuda, else mps, else cpu)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UserError(f"--top must be at least 1, not {args.top}")
    model = load_checkpoint(args.checkpoint)
    mean = load_mean(args.mean) if args.mean else None
    results = predict(model, args.images, crops=args.crops, top=args.top, mean=mean, device=args.device)
    print(json.dumps(results, indent=2) if args.json else format_predictions(results))
    return 0
