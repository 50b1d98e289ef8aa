"""Tiny models and data for the evaluation and prediction tests (seconds on a laptop CPU)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TinyNet(nn.Module):
    """A stand-in with the model contract (``input_size``, ``normalization``, ``class_names``)."""

    def __init__(self, num_classes: int, input_size: int = 8, seed: int = 0, normalization: str = "mean_image"):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.fc = nn.Linear(6 * ((input_size - 3) // 2 + 1) ** 2, num_classes)
        self.input_size = input_size
        self.normalization = normalization
        self.arch = "tiny"
        self.class_names = [f"c{i}" for i in range(num_classes)]

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x / 64)).flatten(1))


class TinyData:
    """The PreparedDataset interface over random images: ``ds[i] -> (uint8 HxWx3, label)``."""

    def __init__(self, n: int, num_classes: int, size: int = 12, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        self.labels = rng.integers(0, num_classes, n).astype(np.int64)
        self.mean = rng.uniform(60, 200, (size, size, 3)).astype(np.float32)
        self.classes = [f"c{i}" for i in range(num_classes)]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])
