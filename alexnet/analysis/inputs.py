"""Centre patches of prepared images as the network's input (sections 2 and 4.1).

Analysis looks at one view of each image: the central ``input_size`` patch of the stored
256x256 image, normalised the way the model expects (``model.normalization``): the paper's
raw RGB minus the training set's mean image (cut at the same window), or torchvision's
per-channel statistics for ``alexnet-owt``.
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` patch of an HxWx3 image."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image of {h}x{w} is smaller than the {size}x{size} input")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


class CentreCrops(torch.utils.data.Dataset):
    """``dataset[indices[i]]`` as (uint8 tensor [3, S, S] of the centre patch, class index)."""

    def __init__(self, dataset, indices, size: int):
        self.dataset, self.indices, self.size = dataset, np.asarray(indices), size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        image, label = self.dataset[int(self.indices[i])]
        patch = np.ascontiguousarray(centre_crop(image, self.size).transpose(2, 0, 1))
        return torch.from_numpy(patch), int(label)


class Normalise:
    """Turns uint8 batches [N, 3, S, S] into the float input ``model`` expects."""

    def __init__(self, model, mean_image: np.ndarray | None, device="cpu"):
        size = model.input_size
        kind = getattr(model, "normalization", "mean_image")
        if kind == "mean_image":
            if mean_image is None:
                raise ValueError("the model subtracts the mean image, but the dataset has none")
            mean = centre_crop(np.asarray(mean_image, dtype=np.float32), size).transpose(2, 0, 1)
            self.shift = torch.from_numpy(np.ascontiguousarray(mean)).to(device)
            self.scale = torch.tensor(1.0, device=device)
        elif kind == "imagenet":
            std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1)
            self.shift = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1) * 255.0
            self.scale = 1.0 / (255.0 * std)
        else:
            raise ValueError(f"unknown normalization {kind!r} of model {getattr(model, 'arch', '?')}")
        self.device = device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return (batch.to(self.device, non_blocking=True).float() - self.shift) * self.scale


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
