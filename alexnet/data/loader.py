"""Batches of uint8 crops from a prepared dataset, for training and testing (paper section 4.1).

:func:`make_loader` returns a ``torch.utils.data.DataLoader`` over one epoch. Each item is a whole
batch, made inside one worker process (:class:`alexnet.data.batches.CropBatches`): it reads the
stored samples (``dataset.read``), decodes them (a 256x256 JPEG with PIL, or a raw ``.npy`` array)
and copies the crop window of each into one slot of a ring of shared-memory uint8 batches made
once per loader; the loader hands over

- ``images``: uint8 ``[N, 3, S, S]``, channels-last in memory (NHWC storage, so a crop is a row
  copy; ``.contiguous()`` gives NCHW storage if ever needed). With ``ten_crop=True``:
  ``[N, 10, 3, S, S]`` in the order of :data:`alexnet.data.transforms.TEN_CROP_ORDER`.
- ``labels``: int64 ``[N]``.
- ``windows``: int64 ``[N, 3]`` (``[N, 10, 3]`` for ten crops): top, left, flipped; the input of
  :class:`alexnet.data.transforms.DeviceTransform`, which does the float work on the device.

No per-sample Python objects are shared with workers: the sampler deals int64 numpy arrays, one per
batch, and the dataset keeps its index in numpy, so host memory stays flat over an epoch however
many workers run.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.utils.data

from alexnet.cores import available_cores
from alexnet.data.batches import CropBatches, EncodedBatches, as_is
from alexnet.data.device_decode import DECODERS
from alexnet.data.prefetch import DevicePrefetcher
from alexnet.data.sampler import BatchSampler, EpochSampler
from alexnet.errors import UserError


class BatchLoader(torch.utils.data.DataLoader):
    """A ``DataLoader`` of :class:`CropBatches` whose workers write into a ring of shared slots.

    Why a slot is never overwritten while it is read: a ``DataLoader`` keeps at most
    ``workers * prefetch_factor`` batches requested and not yet returned, and requests the next
    one when it returns one. The ring has one slot more than that, and this iterator copies each
    batch out of its slot (into page-locked memory when pinning, ready for the GPU) before the
    caller can ask for the batch after it, which is the first that may reuse the slot.
    """

    def __iter__(self):
        # Not a generator: the workers start here, in the caller's thread (``to`` calls this
        # before handing the iterator to its thread; forking from a thread is best avoided).
        workers = super().__iter__()
        batches = workers if getattr(self.dataset, "ring", None) is None else self._copied_out(workers)
        return self._shut_down_after(batches, workers)

    @staticmethod
    def _shut_down_after(batches, workers):
        """``batches``; however their iteration ends (exhausted, an error, closed), the workers are
        shut down then. Left to the iterator's garbage collection, they can outlive it: a traceback
        holds it, and at exit multiprocessing terminates and joins workers that ignore SIGTERM
        (:func:`alexnet.train.data.ignore_stop_signals`) forever. A worker's UserError (a
        damaged sample) arrives as its one-line message."""
        try:
            yield from batches
        except UserError as err:  # a DataLoader raises a worker's again with its traceback in front
            text, name = str(err), type(err).__qualname__
            if not text.startswith(f"Caught {name} in DataLoader worker"):
                raise
            raise UserError(text.rstrip().rpartition(f"{type(err).__module__}.{name}: ")[2]) from None
        finally:
            shut_down = getattr(workers, "_shutdown_workers", None)  # absent without workers
            if shut_down is not None:
                shut_down()

    def _copied_out(self, slots):
        batches: CropBatches = self.dataset
        pin = self.pin_memory and torch.cuda.is_available()  # as DataLoader: no CUDA, no pinning
        for slot, labels, windows in slots:
            images = torch.empty(batches.batch_shape(len(labels)), dtype=torch.uint8, pin_memory=pin)
            np.copyto(images.numpy(), batches.ring[slot, :len(labels)].numpy())  # one thread: the
            # workers have the cores, and torch's parallel copy would wait for them
            yield batches.as_batch(images, labels, windows)

    def to(self, device: torch.device | str, depth: int = 2) -> DevicePrefetcher:
        """The batches on ``device``, staged ``depth`` ahead by a thread (on CUDA, on a side
        stream): :class:`alexnet.data.prefetch.DevicePrefetcher`. With ``decode="device"`` the
        stage decodes the JPEGs there too (:mod:`alexnet.data.device_decode`)."""
        device = torch.device(device)
        stage = getattr(self.dataset, "stage", None)
        return DevicePrefetcher(self, device, depth,
                                stage=None if stage is None else (lambda batch: stage(batch, device)))


def default_workers() -> int:
    """One loader worker per core this process may run on."""
    return available_cores()


def make_loader(dataset, batch_size: int, *, train: bool, crop_size: int, seed: int = 0,
                epoch: int = 0, rank: int = 0, world_size: int = 1, workers: int | None = None,
                start: int = 0, ten_crop: bool = False, pin_memory: bool | None = None,
                limit: int | None = None, random_crop: bool = True, flip: bool = True,
                drop_last: bool = False, prefetch_factor: int = 2, decode: str = "workers") -> BatchLoader:
    """One epoch of uint8 batches of ``dataset`` (a ``PreparedDataset`` or anything with its
    ``read``, ``extension``, ``labels``, ``mean`` and ``len``) for rank ``rank`` of ``world_size``.

    - ``train=True``: samples reshuffled from ``(seed, epoch)``, dealt to ranks with every rank
      the same number (see :mod:`alexnet.data.sampler`), random crops of ``crop_size`` mirrored
      with probability 0.5 (section 4.1; ``random_crop=False`` / ``flip=False`` for ablations).
    - ``train=False``: samples in order, each exactly once over all ranks (no padding), the centre
      crop, or with ``ten_crop=True`` the paper's ten crops.
    - ``start``: global position in the epoch already done (a checkpoint's ``position``); the
      loader yields the rest of the same epoch. ``limit``: read only that many images this epoch.
    - ``workers``: decoding processes (default: one per core; 0 decodes in this process).
    - ``pin_memory``: page-locked batches for fast copies to the GPU (default: when CUDA exists).
    - ``decode``: ``"workers"`` (the workers decode and crop) or ``"device"`` (the workers only read
      the JPEG bytes; ``loader.to(device)`` decodes them there, with nvJPEG on CUDA:
      :mod:`alexnet.data.device_decode`).

    The result is deterministic given ``(seed, epoch, rank, world_size, start)``, whatever the
    number of workers, and making or iterating it never draws from the global random-number
    generators (the training's dropout). A sample that cannot be read or decoded raises a
    one-line UserError naming it and its shard, and the workers are shut down when the iteration
    ends, however it ends. Build a new loader for every epoch and iterate it once. With several ranks
    on one machine, give each ``workers = cores // ranks``.
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
    batch_sampler = BatchSampler(sampler, batch_size, drop_last, slots)
    # A generator of its own: by default a DataLoader seeds its workers from the global torch RNG
    # when iterated, which would shift the training's dropout draws (a resumed run would differ).
    own_rng = torch.Generator().manual_seed(int(np.random.SeedSequence((seed, epoch, rank)).generate_state(1)[0]))
    return BatchLoader(batches, sampler=batch_sampler, batch_size=None, collate_fn=as_is,
                       num_workers=workers, generator=own_rng,
                       pin_memory=(torch.cuda.is_available() if pin_memory is None else pin_memory)
                       and decode == "workers",
                       prefetch_factor=prefetch_factor if workers > 0 else None)
