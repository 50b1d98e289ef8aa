"""Batches of uint8 crops from a prepared dataset, for training and testing (paper section 4.1):
:func:`make_loader`, a ``DataLoader`` whose workers each make whole batches in a ring of shared slots.
"""

from functools import partial

import numpy as np
import torch
import torch.utils.data

from alexnet.cores import available_cores
from alexnet.data.batches import CropBatches, EncodedBatches, as_is
from alexnet.data.device_decode import DECODERS
from alexnet.data.prefetch import DevicePrefetcher, join_ended
from alexnet.data.sampler import BatchSampler, EpochSampler
from alexnet.errors import UserError


class BatchLoader(torch.utils.data.DataLoader):
    """A ``DataLoader`` of :class:`CropBatches` whose workers write into a ring of shared slots: one more
    than the ``workers * prefetch_factor`` batches in flight, each copied out before the next is asked.
    """

    def __iter__(self):
        # Not a generator: the workers start here, in the caller's thread, not the prefetcher's
        workers = super().__iter__()
        batches = workers if getattr(self.dataset, "ring", None) is None else self._copied_out(workers)
        return self._shut_down_after(batches, workers)

    @staticmethod
    def _shut_down_after(batches, workers):
        """``batches``, with the workers shut down however their iteration ends (left to garbage
        collection, they can hang the exit); a worker's UserError arrives as its one-line message."""
        try:
            yield from batches
        except UserError as err:  # a DataLoader raises a worker's again with its traceback in front
            text, name = str(err), type(err).__qualname__
            if not text.startswith(f"Caught {name} in DataLoader worker"):
                raise
            raise UserError(text.rstrip().rpartition(f"{type(err).__module__}.{name}: ")[2]) from None
        finally:
            if hasattr(workers, "_shutdown_workers"):  # absent without workers
                workers._shutdown_workers()
                # its queues' feeder threads end in the background: not while the next loader forks
                join_ended([q._thread for q in getattr(workers, "_index_queues", ()) if q._thread is not None])

    def _copied_out(self, slots):
        batches: CropBatches = self.dataset
        pin = self.pin_memory and torch.cuda.is_available()  # as DataLoader: no CUDA, no pinning
        for slot, labels, windows in slots:
            images = torch.empty(batches.batch_shape(len(labels)), dtype=torch.uint8, pin_memory=pin)
            np.copyto(images.numpy(), batches.ring[slot, :len(labels)].numpy())  # one thread: workers have the cores
            yield batches.as_batch(images, labels, windows)

    def to(self, device: torch.device | str, depth: int = 2) -> DevicePrefetcher:
        """The batches on ``device``, staged ``depth`` ahead by a :class:`DevicePrefetcher` (which
        decodes the JPEGs there too with ``decode="device"``)."""
        stage = getattr(self.dataset, "stage", None)
        return DevicePrefetcher(self, device, depth, stage=stage and partial(stage, device=torch.device(device)))


default_workers = available_cores  # one loader worker per core this process may run on


def make_loader(dataset, batch_size: int, *, train: bool, crop_size: int, seed: int = 0,
                epoch: int = 0, rank: int = 0, world_size: int = 1, workers: int | None = None,
                start: int = 0, ten_crop: bool = False, pin_memory: bool | None = None,
                limit: int | None = None, random_crop: bool = True, flip: bool = True,
                drop_last: bool = False, prefetch_factor: int = 2, decode: str = "workers") -> BatchLoader:
    """One epoch of batches of ``dataset`` (a ``PreparedDataset`` or anything with its ``read``,
    ``extension``, ``labels``, ``mean`` and ``len``) for rank ``rank`` of ``world_size``: ``images``
    uint8 ``[N, 3, S, S]``, channels-last in memory (ten crops: ``[N, 10, 3, S, S]`` in the order of
    ``TEN_CROP_ORDER``), ``labels`` int64 ``[N]``, ``windows`` int64 ``[N, 3]`` (``[N, 10, 3]``) of
    (top, left, flipped) for :class:`alexnet.data.transforms.DeviceTransform`.

    ``train``: shuffled from ``(seed, epoch)``, random crops (section 4.1); else in order, each sample
    once over all ranks, centre or ``ten_crop`` crops. ``start``: global position already done (a
    checkpoint's ``position``); ``limit``: images read. ``workers``: decoding processes (default: one
    per core; 0: this process). ``pin_memory`` defaults to whether CUDA exists. ``decode="device"``:
    workers only read, ``loader.to(device)`` decodes (:mod:`alexnet.data.device_decode`).

    Deterministic given ``(seed, epoch, rank, world_size, start)``, never drawing from the global
    generators; an unreadable sample is a UserError naming it. Make and iterate one loader per epoch.
    """
    if ten_crop and train:
        raise ValueError("ten_crop is a test transform: use it with train=False")
    sampler = EpochSampler(len(dataset), seed=seed, epoch=epoch, rank=rank, world_size=world_size,
                           start=start, shuffle=train, pad=train, limit=limit)
    if decode not in DECODERS:
        raise UserError(f"--decode {decode}: unknown; choose one of {', '.join(DECODERS)}")
    windows = "random" if train else ("ten" if ten_crop else "centre")
    kind = EncodedBatches if decode == "device" else CropBatches
    batches = kind(dataset, crop_size, windows, seed=seed, epoch=epoch, random_crop=random_crop, flip=flip)
    workers = default_workers() if workers is None else workers
    slots = workers * prefetch_factor + 1 if workers > 0 and decode == "workers" else None
    if slots:
        batches.ring = torch.empty((slots, *batches.batch_shape(batch_size)), dtype=torch.uint8).share_memory_()
    # Its own generator: a DataLoader seeds its workers from the global torch RNG, shifting dropout's draws
    own_rng = torch.Generator().manual_seed(int(np.random.SeedSequence((seed, epoch, rank)).generate_state(1)[0]))
    return BatchLoader(batches, sampler=BatchSampler(sampler, batch_size, drop_last, slots), batch_size=None,
                       collate_fn=as_is, num_workers=workers, generator=own_rng,
                       pin_memory=(torch.cuda.is_available() if pin_memory is None else pin_memory)
                       and decode == "workers", prefetch_factor=prefetch_factor if workers > 0 else None)
