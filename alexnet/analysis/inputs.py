"""Centre patches of prepared images as ``alexnet evaluate --crops center`` feeds them (sections 2 and 4.1)."""

import numpy as np
import torch

from alexnet.data.batches import CropBatches, as_is
from alexnet.data.transforms import centre_window
from alexnet.inference import input_transform, model_mean


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` patch of an HxWx3 image (for display), as the network sees it."""
    top, left, _ = centre_window(image.shape[:2], size)
    return image[top : top + size, left : left + size]


def sample_indices(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """All of ``range(n)``, or ``limit`` of them drawn at random without repeats, in order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def centre_batches(dataset, indices, crop_size: int, batch_size: int, workers: int = 0):
    """``(uint8 images [N, 3, S, S], labels, windows)`` of ``dataset[indices]``'s centre patches, in order."""
    indices = np.asarray(indices, np.int64)
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    return torch.utils.data.DataLoader(CropBatches(dataset, crop_size, "centre"), sampler=batches,
                                       batch_size=None, collate_fn=as_is, num_workers=workers)


class CentreInput:
    """Turns ``centre_batches`` output into ``model``'s float input on ``device``."""

    def __init__(self, model, dataset, device):
        mean = model_mean(model, dataset.mean)
        self.transform = input_transform(model, mean, tuple(np.shape(dataset.mean)[:2])).to(device)
        self.device = device

    def __call__(self, images: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        return self.transform(images.to(self.device, non_blocking=True), windows.to(self.device))
