"""`alexnet predict`: the most probable classes of images, as in the paper's Figure 4 (left).

Each image is prepared as the training images were (section 2, :func:`alexnet.data.images.center_patch`):
its shorter side rescaled to 256, the central 256x256 patch cut out; then the centre crop or the ten
crops of section 4.1 with the training set's mean image subtracted, and the softmax outputs of the
ten averaged. Models converted from torchvision's weights (``normalization="imagenet"``) get
torchvision's preprocessing instead, to the pixel: ``Resize(256)`` (bilinear), ``CenterCrop(224)``
(whose rounding the central 256x256 patch reproduces), then ImageNet's mean and std.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from alexnet.data.images import BadImage, center_patch, open_image, to_rgb
from alexnet.data.transforms import centre_window, crop_into, ten_crop_windows
from alexnet.errors import UserError
from alexnet.evaluate import (
    check_crops,
    class_probabilities,
    default_device,
    input_transform,
    load_checkpoint,
    model_mean,
)

IMAGE_SIZE = 256  # section 2: shorter side to 256, then the central 256x256 patch
BATCH = 32  # images per forward pass (x10 with ten crops)


def torchvision_patch(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """The central ``size`` x ``size`` patch as torchvision's ``Resize(size)`` and ``CenterCrop`` cut it:
    bilinear resize of the whole image, the longer side truncated, the offset rounded half to even."""
    w, h = image.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = to_rgb(image).resize(new, Image.Resampling.BILINEAR)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    return np.asarray(image.crop((left, top, left + size, top + size)))


def load_image(path: str | Path, model: nn.Module | None = None, size: int = IMAGE_SIZE) -> np.ndarray:
    """The central ``size`` x ``size`` patch (uint8 ``[size, size, 3]``) of an image file, prepared
    for ``model``: as the training data (default) or as torchvision (``normalization="imagenet"``).

    Any format and mode PIL reads (CMYK, greyscale, PNG under a .JPEG name) becomes RGB.
    """
    try:
        image = open_image(Path(path).read_bytes())
        if getattr(model, "normalization", None) == "imagenet":
            return torchvision_patch(image, size)
        return center_patch(image, size)
    except FileNotFoundError:
        raise UserError(f"{path}: no such image file") from None
    except BadImage as err:
        raise UserError(f"{path}: {err}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err})") from None


def crop_images(images: np.ndarray, size: int, crops: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, H, W, 3]`` -> their test crops ``[N, V, 3, size, size]`` and windows
    ``[N, V, 3]``: the centre crop (V = 1) or the ten crops of section 4.1, as the loader cuts them."""
    image_size = images.shape[1:3]
    windows = ten_crop_windows(image_size, size) if crops == "ten" else centre_window(image_size, size)[None]
    out = np.empty((len(images), len(windows), size, size, 3), np.uint8)
    for k, image in enumerate(images):
        for v, window in enumerate(windows):
            crop_into(out[k, v], image, window)
    windows = np.broadcast_to(windows, (len(images), *windows.shape))
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3), torch.from_numpy(windows.copy())


def load_mean(path: str | Path) -> torch.Tensor:
    """A mean image from ``mean.npy`` or from a prepared dataset folder holding one. The header is
    read first, so that a file of another kind or shape is refused before its data is read."""
    path = Path(path)
    if path.is_dir():
        path = path / "mean.npy"
    if not path.is_file():
        raise UserError(f"--mean {path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"--mean {path}: the file is empty")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(f))
        except ValueError:
            raise UserError(f"--mean {path}: not a .npy file (an array numpy.save wrote, as a prepared "
                            "dataset's mean.npy)") from None
    if dtype.hasobject or dtype.kind not in "fiu":
        raise UserError(f"--mean {path}: holds {dtype} values, not numbers")
    if not (shape == (3,) or (len(shape) == 3 and shape[2] == 3 and shape[0] == shape[1])):
        raise UserError(f"--mean {path}: expected a square HxWx3 mean image or 3 channel means, got shape {shape}")
    try:
        mean = np.load(path, allow_pickle=False)
    except ValueError as err:  # the header was whole, the data is not
        raise UserError(f"--mean {path}: truncated or damaged ({err})") from None
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
    check_crops(crops)
    device = torch.device(device) if device is not None else default_device()
    model.to(device).eval()
    mean = model_mean(model, mean) if getattr(model, "normalization", None) == "mean_image" else None
    size = mean.shape[0] if mean is not None and len(mean.shape) == 3 else IMAGE_SIZE  # the training images' size
    transform = input_transform(model, mean, (size, size)).to(device)
    names = getattr(model, "class_names", None)
    results = []
    for start in range(0, len(paths), BATCH):
        chunk = paths[start : start + BATCH]
        patches = np.stack([load_image(p, model, size) for p in chunk])
        images, windows = crop_images(patches, model.input_size, crops)
        probs = class_probabilities([model], [transform], images, windows).cpu()
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


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UserError(f"--top must be at least 1, not {args.top}")
    model = load_checkpoint(args.checkpoint)
    mean = load_mean(args.mean) if args.mean else None
    results = predict(model, args.images, crops=args.crops, top=args.top, mean=mean, device=args.device)
    print(json.dumps(results, indent=2) if args.json else format_predictions(results))
    return 0
