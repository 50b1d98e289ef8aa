"""What the training loop reads: batches in a reproducible order, split across processes.

The order of an epoch is a permutation drawn from ``(seed, epoch)`` alone, so a run
resumed at sample ``position`` of an epoch sees exactly the batches it would have seen.
Every global batch of ``batch_size`` samples is dealt out to the data-parallel processes
(rank r takes positions r, r + world, ...), so N processes see the same global batches as
one. Validation splits its images across processes without padding: each image counts
exactly once.

``--data synthetic`` gives random uint8 images that follow the same batch contract as
prepared data (uint8 ``[N, 3, S, S]``, int64 labels, int64 crop windows ``[N, 3]``); each
class has its own mean colour, so a network can learn them: an offline check that
training works, and a measure of the network's speed without any decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, labels, windows


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of ``epoch``: a permutation of range(n) that depends on nothing else."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full global batches per epoch (the last, partial batch is dropped, as is usual)."""
    return n // batch_size


def rank_share(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return indices[rank::world]


def train_indices(n: int, batch_size: int, seed: int, epoch: int, start_step: int,
                  rank: int, world: int) -> Iterator[torch.Tensor]:
    """This process's sample indices, global batch by global batch, from ``start_step`` on."""
    order = epoch_order(n, seed, epoch)
    for step in range(start_step, steps_per_epoch(n, batch_size)):
        yield rank_share(order[step * batch_size:(step + 1) * batch_size], rank, world)


def val_indices(n: int, batch_size: int, rank: int, world: int) -> Iterator[torch.Tensor]:
    """This process's validation indices: every image on exactly one process, none twice."""
    mine = torch.arange(rank, n, world)
    per_rank = max(batch_size // world, 1)
    yield from mine.split(per_rank)


@dataclass
class TrainingData:
    """The two splits as batch iterators, and the float conversion done on the training device."""

    train_size: int
    val_size: int
    train_batches: Callable[[int, int], Iterable[Batch]]  # (epoch, start step) -> batches on the device
    val_batches: Callable[[], Iterable[Batch]]
    to_input: Callable[[str, Batch], torch.Tensor]  # (split, batch) -> float network input


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

    def batch(self, indices: torch.Tensor) -> Batch:
        i = (indices % len(self.labels)).to(self.images.device)
        return self.images[i], self.labels[i], self.windows[i]


def synthetic(num_classes: int, size: int, seed: int, batch_size: int, rank: int, world: int,
              device: torch.device, train_size: int = 2560, val_size: int = 512) -> TrainingData:
    """Random learnable images of the network's input size (no crop, no augmentation)."""
    train, val = (SyntheticImages(n, num_classes, size, seed, split, device)
                  for n, split in ((train_size, "train"), (val_size, "val")))

    def to_input(split: str, batch: Batch) -> torch.Tensor:
        return batch[0].float() - 127.5  # raw 0-255 values, centred (the paper's preprocessing)

    return TrainingData(train_size=train_size,
                        val_size=val_size, to_input=to_input,
                        train_batches=lambda epoch, start: map(train.batch, train_indices(
                            train_size, batch_size, seed, epoch, start, rank, world)),
                        val_batches=lambda: map(val.batch, val_indices(val_size, batch_size, rank, world)))
