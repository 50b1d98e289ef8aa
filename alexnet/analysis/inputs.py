"""Whole prepared images for the analysis commands, and the centre patch the network sees.

Analysis looks at one view of each image, the central ``input_size`` patch of the stored
256x256 image (sections 2 and 4.1), normalised as the model expects. Normalising and cropping
are ``alexnet.evaluate``'s own (``normalize``, ``take_crops``), so a figure sees exactly what
``alexnet evaluate --crops center`` sees.
"""

from __future__ import annotations

import numpy as np
import torch

from alexnet.evaluate import default_device, model_mean, normalize, take_crops


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` patch of an HxWx3 image (for display)."""
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


class WholeImages(torch.utils.data.Dataset):
    """``dataset[indices[i]]`` as (uint8 tensor [3, H, W], class index)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        image, label = self.dataset[int(self.indices[i])]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), int(label)


def centre_input(images: torch.Tensor, model, dataset) -> torch.Tensor:
    """uint8 [N, 3, H, W] images -> the model's normalised centre patches, on the model's device."""
    device = next(model.parameters()).device
    mean = model_mean(model, getattr(dataset, "mean", None))
    return take_crops(normalize(images.to(device, non_blocking=True), model, mean), model.input_size, "center")


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, else MPS, else the CPU (as ``alexnet evaluate``)."""
    return default_device() if name == "auto" else torch.device(name)
