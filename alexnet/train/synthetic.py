"""``--data synthetic`` gives random uint8 images that follow the same batch contract as
prepared data (uint8 ``[N, 3, S, S]``, int64 labels, int64 crop windows ``[N, 3]``); each
class has its own mean colour, so a network can learn them: an offline check that
training works, and a measure of the network's speed without decoding.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from alexnet.data.sampler import rank_indices
from alexnet.data.transforms import DeviceTransform
from alexnet.train.training_data import Batch, TrainingData


class SyntheticImages:
    """A fixed pool of random uint8 images, kept on the training device; sample i is pool[i % P].

    Each class has its own random mean colour (the same in both splits) plus per-pixel noise, so the
    classes are learnable and a trained network generalises to the validation split.
    """

    def __init__(self, n: int, num_classes: int, size: int, seed: int, split: str, device: torch.device,
                 pool: int = 256):
        colours = torch.randint(40, 216, (num_classes, 3, 1, 1), generator=torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed + (1 if split == "val" else 2))
        pool = min(n, pool)
        self.labels = torch.arange(pool) % num_classes
        noise = torch.randint(-40, 41, (pool, 3, size, size), generator=g)
        self.images = (colours[self.labels] + noise).clamp(0, 255).to(torch.uint8).to(device)
        self.labels = self.labels.to(device)
        self.windows = torch.zeros(pool, 3, dtype=torch.int64, device=device)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def batch(self, indices: np.ndarray) -> Batch:
        i = torch.from_numpy(indices % len(self.labels)).to(self.images.device)
        return self.images[i], self.labels[i], self.windows[i]


def in_batches(indices: np.ndarray, size: int, drop_last: bool) -> Iterable[np.ndarray]:
    stop = len(indices) - len(indices) % size if drop_last else len(indices)
    return (indices[i:i + size] for i in range(0, stop, size))


def synthetic(num_classes: int, size: int, normalization: str, seed: int, batch_size: int, rank: int,
              world: int, device: torch.device, train_size: int = 2560, val_size: int = 512) -> TrainingData:
    """Random learnable images of the network's input size; the mean image is a flat 127.5."""
    train, val = (SyntheticImages(n, num_classes, size, seed, split, device)
                  for n, split in ((train_size, "train"), (val_size, "val")))
    per_rank = batch_size // world
    transform = DeviceTransform(np.full((size, size, 3), 127.5, np.float32), None, None, size, pca_std=0.0,
                                normalization=normalization).to(device)

    def train_batches(epoch: int, start: int):
        order = rank_indices(train_size, seed=seed, epoch=epoch, rank=rank, world_size=world, start=start)
        return map(train.batch, in_batches(order, per_rank, drop_last=True))

    def val_batches():
        order = rank_indices(val_size, rank=rank, world_size=world, shuffle=False, pad=False)
        return map(val.batch, in_batches(order, per_rank, drop_last=False))

    return TrainingData(train_size, val_size, train_batches, val_batches, transform)
