"""What the training loop reads (``--data``): batches in a reproducible order, split across processes.

The order of an epoch and each process's share of it come from :mod:`alexnet.data.sampler`
(a pure function of seed, epoch, rank and position), so a run resumed at sample ``position``
of an epoch sees exactly the batches it would have seen, and N data-parallel processes
together see the global batches one process would. Validation is split without padding:
every image counts exactly once. On the device, :class:`alexnet.data.transforms.DeviceTransform`
turns uint8 batches into the network's input (mean image, PCA colour noise in training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

from alexnet.data.sampler import padded_length
from alexnet.data.transforms import DeviceTransform

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, labels, windows


def steps_per_epoch(images: int, batch_size: int, world: int) -> int:
    """Optimiser steps per epoch: full global batches of the (padded) epoch, the same on every rank."""
    return padded_length(images, world, pad=True) // world // (batch_size // world)


@dataclass
class TrainingData:
    """The two splits as batch iterators on the training device, and the device transform."""

    train_size: int  # training images per epoch
    val_size: int
    train_batches: Callable[[int, int], Iterable[Batch]]  # (epoch, global position to start at)
    val_batches: Callable[[], Iterable[Batch]]
    transform: DeviceTransform
    mean: np.ndarray | None = None  # the training set's mean image (HxWx3, 0-255), kept in checkpoints

    def to_input(self, batch: Batch, train: bool) -> torch.Tensor:
        """The float network input of a batch (PCA colour noise only in training)."""
        self.transform.train(train)
        return self.transform(batch[0], batch[2])
