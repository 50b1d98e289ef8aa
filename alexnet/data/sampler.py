"""Which samples each rank reads, in which order: a fresh shuffle every epoch (paper section 5), a pure
function of ``(seed, epoch, rank, world_size, start)``, so a resumed run reads the rest of the epoch as
the interrupted one would have. Position ``p`` goes to rank ``p % world_size``."""

from collections.abc import Iterator

import numpy as np
import torch.utils.data


def epoch_order(num_samples: int, seed: int, epoch: int, *, shuffle: bool = True,
                limit: int | None = None) -> np.ndarray:
    """The epoch's global order of sample numbers (int64): a permutation drawn from ``(seed, epoch)``
    with ``shuffle``, else ``0..n-1``. ``limit`` keeps its first ``limit``, or without shuffling
    ``limit`` evenly spaced samples (so every class of a sorted set is covered)."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if shuffle:
        order = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(num_samples).astype(np.int64)
    else:
        order = np.arange(num_samples, dtype=np.int64)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be a positive number of images, got {limit}")
        if shuffle or limit >= num_samples:
            order = order[:limit]
        else:
            order = np.arange(limit, dtype=np.int64) * num_samples // limit
    return order


def positions_before(start: int, rank: int, world_size: int) -> int:
    """How many of the first ``start`` global positions belong to ``rank`` (dealt round-robin)."""
    return max(0, -(-(start - rank) // world_size))


def rank_indices(num_samples: int, *, seed: int = 0, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, start: int = 0, shuffle: bool = True, pad: bool = True,
                 limit: int | None = None) -> np.ndarray:
    """The sample numbers ``rank`` reads in ``epoch``, from global position ``start`` on (int64)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    order = epoch_order(num_samples, seed, epoch, shuffle=shuffle, limit=limit)
    extra = padded_length(len(order), world_size, pad) - len(order)
    if extra:
        order = np.concatenate([order, np.resize(order, extra)])
    return order[rank::world_size][positions_before(start, rank, world_size):]


def padded_length(num_samples: int, world_size: int, pad: bool) -> int:
    """Global positions in an epoch: ``num_samples``, rounded up to a multiple of ``world_size`` with ``pad``."""
    return -(-num_samples // world_size) * world_size if pad else num_samples


class EpochSampler(torch.utils.data.Sampler):
    """A torch ``Sampler`` over :func:`rank_indices`; it holds only its arguments (stateless)."""

    def __init__(self, num_samples: int, *, seed: int = 0, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, start: int = 0, shuffle: bool = True, pad: bool = True, limit: int | None = None):
        self.num_samples, self.seed, self.epoch, self.start = num_samples, seed, epoch, start
        self.rank, self.world_size, self.shuffle, self.pad, self.limit = rank, world_size, shuffle, pad, limit
        rank_indices(0, rank=rank, world_size=world_size, start=start)  # validate now, not later

    def indices(self) -> np.ndarray:
        return rank_indices(self.num_samples, seed=self.seed, epoch=self.epoch, rank=self.rank,
                            world_size=self.world_size, start=self.start, shuffle=self.shuffle,
                            pad=self.pad, limit=self.limit)

    def __iter__(self) -> Iterator[int]:
        return map(int, self.indices())  # lazily: no list of a million Python ints

    def __len__(self) -> int:
        n = self.num_samples if self.limit is None else min(self.limit, self.num_samples)
        total = padded_length(n, self.world_size, self.pad)
        done = positions_before(self.start, self.rank, self.world_size)
        return max(0, positions_before(total, self.rank, self.world_size) - done)


class BatchSampler(torch.utils.data.Sampler):
    """This rank's samples as int64 arrays of ``batch_size``; ``drop_last`` drops a final short batch.
    With ``slots``, each comes as ``(slot, sample numbers)``, the slots of a ring taken in turn."""

    def __init__(self, sampler: EpochSampler, batch_size: int, drop_last: bool = False, slots: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler, self.batch_size, self.drop_last, self.slots = sampler, batch_size, drop_last, slots

    def __iter__(self) -> Iterator[np.ndarray]:
        indices = self.sampler.indices()
        stop = len(indices) - len(indices) % self.batch_size if self.drop_last else len(indices)
        for number, begin in enumerate(range(0, stop, self.batch_size)):
            batch = indices[begin:begin + self.batch_size]
            yield batch if self.slots is None else (number % self.slots, batch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
