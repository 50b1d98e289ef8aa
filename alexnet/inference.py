"""Running a trained network: its test-time inputs (section 2), ten crops (4.1), ensembles (6), top-1/top-5 error."""

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from alexnet import console
from alexnet.classes import check_classes, class_lists, num_outputs
from alexnet.data.dataset import image_shape
from alexnet.data.download import DATASETS, cache_root
from alexnet.data.images import FILE_BYTES_PER_PIXEL, BadImage, centre_patch, check_pixels, open_image, to_rgb
from alexnet.data.loader import make_loader
from alexnet.data.source_files import read_regular
from alexnet.data.transforms import DeviceTransform, cut_at_windows, view_windows
from alexnet.defaults import CROPS, MAX_PIXELS
from alexnet.devices import pick_device
from alexnet.errors import UserError
from alexnet.modelfile import model_from_record, read_model_file

IMAGE_SIZE = 256  # section 2: shorter side to 256, then the central 256x256 patch
BATCH = 32  # image files per forward pass (x10 with ten crops)


def load_model(path: str | Path, devices=None) -> nn.Module:
    """The network in a model file, checkpoint or run folder, checked first (UserError), with its ``mean`` (float32
    ``[256, 256, 3]``, 0-255): the file's, else its training data's ``mean.npy`` if still here, else None."""
    record = read_model_file(path)
    model = model_from_record(record, path, devices)
    data = (record.get("config") or {}).get("data")
    if model.mean is None and getattr(model, "normalization", None) == "mean_image" and data:
        for folder in [Path(data)] + ([cache_root() / data] if data in DATASETS else []):
            if (folder / "mean.npy").is_file():
                model.mean = torch.from_numpy(np.load(folder / "mean.npy", allow_pickle=False))
                break
    return model


def model_mean(model: nn.Module, fallback) -> torch.Tensor | np.ndarray | None:
    """The mean image a model subtracts: its own, else ``fallback`` (a mean, or a function called only then)."""
    mean = getattr(model, "mean", None)
    if mean is not None or getattr(model, "normalization", "mean_image") != "mean_image":
        return mean
    return fallback() if callable(fallback) else fallback


def input_transform(model: nn.Module, mean, image_size: tuple[int, int]) -> DeviceTransform:
    """The float half of ``model``'s test-time inputs: 0-255 RGB minus ``mean`` (``[H, W, 3]`` or ``[3]``; section
    2), or for ``normalization == "imagenet"`` (torchvision's weights) ImageNet's mean and std on the 0-1 scale."""
    size = model.input_size
    if size > min(image_size):
        raise UserError(f"{getattr(model, 'arch', type(model).__name__)} takes {size}x{size} inputs but the images "
                        f"are {image_size[0]}x{image_size[1]}")
    normalization = getattr(model, "normalization", "mean_image")
    if normalization == "mean_image":
        if mean is None:
            raise UserError("the model subtracts its training set's mean image (section 2) and its file holds "
                            "none: pass --mean with the mean.npy of the prepared training data")
        mean = torch.as_tensor(mean, dtype=torch.float32)
        if mean.shape == (3,):
            mean = mean.expand(*image_size, 3)
        if tuple(mean.shape) != (*image_size, 3):
            raise UserError(f"the mean image is {'x'.join(map(str, mean.shape))} but the images are "
                            f"{image_size[0]}x{image_size[1]}x3")
    return DeviceTransform(mean, None, None, size, pca_std=0.0, normalization=normalization).eval()


def check_crops(crops: str) -> None:
    if crops not in CROPS:
        raise UserError(f"crops must be one of {', '.join(CROPS)}, not {crops!r}")


@torch.inference_mode()
def class_probabilities(models: Sequence[nn.Module], transforms: Sequence[DeviceTransform],
                        images: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Softmax outputs ``[N, classes]`` averaged over each image's crops (section 4.1) and the models (section 6)."""
    total = None
    for model, transform in zip(models, transforms, strict=True):
        device = next(model.parameters()).device
        x = transform.to(device)(images.to(device, non_blocking=True), windows.to(device))
        logits = model(x.reshape(-1, *x.shape[-3:])).float()
        probs = torch.softmax(logits, dim=1).view(len(images), -1, logits.shape[1]).mean(dim=1)
        total = probs if total is None else total + probs.to(total.device)
    return total / len(models)


def predictions(models: Sequence[nn.Module], dataset, crops: str = "ten", batch_size: int = 128,
                device: str | torch.device | None = None, workers: int | None = None,
                names: Sequence[str] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``(probabilities [N, classes], labels [N])`` over ``dataset``, in order; ``names`` name the models."""
    if not models:
        raise UserError("no model to evaluate")
    check_crops(crops)
    names = list(names) if names is not None else [getattr(m, "arch", type(m).__name__) for m in models]
    check_classes(models, dataset, names)
    sizes = {model.input_size for model in models}
    if len(sizes) > 1:
        listed = ", ".join(f"{n} {m.input_size}" for n, m in zip(names, models))
        raise UserError(f"the models of an ensemble must take the same input size, not {listed}")
    device = pick_device(device)
    image_size = image_shape(dataset)
    transforms = [input_transform(m, model_mean(m, lambda: dataset.mean), image_size).to(device) for m in models]
    for model in models:
        model.to(device).eval()
    loader = make_loader(dataset, batch_size, train=False, crop_size=sizes.pop(), ten_crop=crops == "ten",
                         workers=workers, pin_memory=device.type == "cuda")
    for images, labels, windows in loader.to(device):  # staged on the device a batch ahead
        yield class_probabilities(models, transforms, images, windows).cpu(), labels.cpu()


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per image, whether the label is among the ``k`` most probable classes (all, if fewer than k)."""
    return (probs.topk(min(k, probs.shape[1]), dim=1).indices == labels.view(-1, 1)).any(dim=1)


class ErrorCounter:
    """Accumulates top-1/top-5 hits and per-class top-1 hits over batches."""

    def __init__(self, num_classes: int):
        self.images = self.top1 = self.top5 = 0
        self.class_images, self.class_top1 = torch.zeros(2, num_classes, dtype=torch.int64)

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        probs, labels = probs.cpu(), labels.cpu()
        hit1 = topk_correct(probs, labels, 1)
        self.images += len(labels)
        self.top1 += int(hit1.sum())
        self.top5 += int(topk_correct(probs, labels, 5).sum())
        self.class_images += torch.bincount(labels, minlength=len(self.class_images))
        self.class_top1 += torch.bincount(labels[hit1], minlength=len(self.class_images))

    def result(self, class_ids: Sequence[str]) -> dict:
        """Errors in percent; per-class top-1 accuracy in percent by class id (None for a class without images)."""
        if self.images == 0:
            raise UserError("the split holds no images")
        per_class = {name: (100.0 * int(hits) / int(n) if n else None)
                     for name, hits, n in zip(class_ids, self.class_top1, self.class_images, strict=True)}
        return {"top1_error": 100.0 * (1 - self.top1 / self.images),
                "top5_error": 100.0 * (1 - self.top5 / self.images), "images": self.images,
                "per_class_accuracy": per_class}


def evaluate(models: nn.Module | Sequence[nn.Module], dataset, crops: str = "ten", batch_size: int = 128,
             device: str | torch.device | None = None, workers: int | None = None, progress: bool = True,
             names: Sequence[str] | None = None) -> dict:
    """Top-1/top-5 error (percent, section 2) of one model or an ensemble on ``dataset``, arguments as for
    :func:`predictions`, with ``images``, ``crops``, ``models`` and ``per_class_accuracy`` (top-1, by class id)."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    class_ids = class_lists(dataset)[1]
    counter = ErrorCounter(len(class_ids))
    with console.progress(total=len(dataset), unit="img", desc=f"evaluate ({crops})", disable=not progress) as bar:
        for probs, labels in predictions(models, dataset, crops, batch_size, device, workers, names):
            counter.update(probs, labels)
            bar.set_postfix(top1_error=f"{100 * (1 - counter.top1 / counter.images):.2f}%", refresh=False)
            bar.update(len(labels))
    return {**counter.result(class_ids), "crops": crops, "models": len(models)}


def load_image(path: str | Path, model: nn.Module | None = None, size: int = IMAGE_SIZE,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The central ``size`` x ``size`` RGB patch of any image PIL reads, cut as the training images were (section
    2) or for ``normalization="imagenet"`` as torchvision does, within ``max_pixels`` as ``alexnet prepare``."""
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: the budget below is what holds
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = open_image(read_regular(Path(path), FILE_BYTES_PER_PIXEL * max_pixels))
        if getattr(model, "normalization", None) != "imagenet":
            return centre_patch(image, size, max_pixels)
        check_pixels(image, max_pixels)  # then torchvision's Resize(size) (bilinear) and CenterCrop, to the pixel
        w, h = image.size
        new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        image = to_rgb(image).resize(new, Image.Resampling.BILINEAR)
        left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
        return np.asarray(image.crop((left, top, left + size, top + size)))
    except FileNotFoundError:
        raise UserError(f"{path}: no such image file") from None
    except BadImage as err:
        raise UserError(f"{path}: {err}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err})") from None


def predict(model: nn.Module, paths: Sequence[str | Path], crops: str = "ten", top: int = 5,
            mean: torch.Tensor | None = None, device: str | torch.device | None = None,
            max_pixels: int = MAX_PIXELS) -> list[dict]:
    """The ``top`` most probable classes of each image (Figure 4, left): ``[{"image", "predictions": [{"class",
    "index", "probability"}, ...]}]``, most probable first; ``mean`` serves a model file that holds none."""
    check_crops(crops)
    device = pick_device(device)
    model.to(device).eval()
    mean = model_mean(model, mean) if getattr(model, "normalization", None) == "mean_image" else None
    size = mean.shape[0] if mean is not None and len(mean.shape) == 3 else IMAGE_SIZE  # the training images' size
    transform = input_transform(model, mean, (size, size)).to(device)
    views = torch.from_numpy(view_windows((size, size), model.input_size, crops))  # as the loader cuts them
    names = getattr(model, "class_names", None) or [f"class {c}" for c in range(num_outputs(model))]
    results = []
    for start in range(0, len(paths), BATCH):
        chunk = paths[start : start + BATCH]
        patches = torch.from_numpy(np.stack([load_image(p, model, size, max_pixels) for p in chunk]))
        windows = views.expand(len(chunk), -1, -1)
        images = cut_at_windows(patches, windows, model.input_size).permute(0, 1, 4, 2, 3)
        probs = class_probabilities([model], [transform], images, windows).cpu()
        values, indices = probs.topk(min(top, probs.shape[1]), dim=1)
        for path, p, i in zip(chunk, values.tolist(), indices.tolist()):
            ranked = [{"class": names[c], "index": c, "probability": q} for q, c in zip(p, i)]
            results.append({"image": str(path), "predictions": ranked})
    return results
