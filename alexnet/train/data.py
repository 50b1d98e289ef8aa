"""What the training loop reads (``--data``): a prepared dataset or synthetic images, batched on the device in an
order that depends only on seed, epoch, rank and position (so a resume is exact), and the device transform of
sections 2 and 4.1. Validation is split without padding: every image counts once."""

import functools
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from alexnet.data.dataset import PreparedDataset
from alexnet.data.device_decode import check_device_decoding
from alexnet.data.download import DownloadError
from alexnet.data.loader import default_workers, make_loader
from alexnet.data.prepare import ensure_prepared
from alexnet.data.sampler import padded_length, rank_indices
from alexnet.data.transforms import DeviceTransform
from alexnet.errors import UserError
from alexnet.train import distributed
from alexnet.train.config import TrainConfig

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, labels, windows


@dataclass
class TrainingData:
    """The two splits as batch iterators on the training device, and the device transform."""

    class_names: list[str]
    train_size: int  # training images per epoch
    val_size: int
    steps: int  # optimiser steps per epoch
    train_batches: Callable[[int, int], Iterable[Batch]]  # (epoch, global position to start at)
    val_batches: Callable[[], Iterable[Batch]]
    transform: DeviceTransform
    mean: np.ndarray | None = None  # the training set's mean image (HxWx3, 0-255), kept in checkpoints


def steps_per_epoch(images: int, config: TrainConfig, world: int) -> int:
    """Optimiser steps per epoch: full global batches of the (padded) epoch, the same on every rank."""
    steps = padded_length(images, world, pad=True) // world // (config.batch_size // world)
    if steps == 0:
        raise UserError(f"--batch-size {config.batch_size} is larger than the {images} "
                        "training images per epoch; lower it or raise --limit")
    return steps


def dataset_classes(config: TrainConfig, ctx: distributed.Context) -> list[str]:
    """The class names of ``--data`` (prepared on first use, once per machine); synthetic: ``num_classes``."""
    if config.data == "synthetic":
        return [f"class{i}" for i in range(config.model_options.get("num_classes", 10))]
    with distributed.local_leader_first(ctx):
        return list(PreparedDataset(prepared_dir(config.data), "train").class_names)


def prepared_dir(data: str) -> Path:
    """The prepared folder ``--data`` names; offline, a message that offers the alternatives."""
    try:
        return ensure_prepared(data)
    except DownloadError as err:
        raise UserError(f"--data {data}: {err}\nWithout network: train on random images with --data synthetic, "
                        "or on a dataset you have with --data PATH (a folder made by `alexnet prepare SOURCE "
                        "PATH`).") from None


def prepared_data(config: TrainConfig, ctx: distributed.Context, model: nn.Module,
                  class_names: list[str]) -> TrainingData:
    """The prepared dataset ``--data`` names, cropped to the network's input size."""
    root = prepared_dir(config.data)
    train, val = PreparedDataset(root, "train"), PreparedDataset(root, "val")
    if config.decode == "device":  # before the run folder is made
        check_device_decoding(train)
    per_rank, size = config.batch_size // ctx.world, model.input_size
    workers = default_workers_per_process(ctx.device) if config.workers is None else config.workers
    common = dict(crop_size=size, rank=ctx.rank, world_size=ctx.world, workers=workers, decode=config.decode)
    transform = DeviceTransform.for_dataset(train, size, normalization=model.normalization, seed=config.seed,
                                            rank=ctx.rank, world_size=ctx.world, pca_std=config.pca_std).to(ctx.device)

    def train_batches(epoch: int, start: int):
        transform.set_epoch(epoch, start)
        return _on_device(make_loader(train, per_rank, train=True, seed=config.seed, epoch=epoch, start=start,
                                      limit=config.limit, drop_last=True, random_crop=config.random_crop,
                                      flip=config.flip, **common), ctx.device)

    def val_batches():
        return _on_device(make_loader(val, per_rank, train=False, limit=config.val_limit, **common), ctx.device)

    train_size, val_size = min(len(train), config.limit or len(train)), min(len(val), config.val_limit or len(val))
    return TrainingData(class_names, train_size, val_size, steps_per_epoch(train_size, config, ctx.world),
                        train_batches, val_batches, transform, mean=np.asarray(train.mean, dtype=np.float32))


def default_workers_per_process(device: torch.device) -> int:
    """Loader workers for one process: its share of the cores, less one on a GPU to launch the kernels."""
    share = default_workers() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, share - (1 if device.type == "cuda" else 0))


def _on_device(loader, device: torch.device):
    """The loader's batches on ``device``, staged ahead by a thread (on CUDA, on a side stream)."""
    loader.worker_init_fn = functools.partial(ignore_stop_signals, trainer=os.getpid())
    return loader.to(device)


def ignore_stop_signals(worker_id: int, trainer: int) -> None:
    """In loader workers: leave SIGINT, and SIGTERM from any but process ``trainer`` (not always the parent), to the
    trainer, which saves; SIGTERM from the trainer still ends a worker (without ``sigwaitinfo``, macOS: it exits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # before the thread: it inherits the mask

    def exit_on_sigterm_from_trainer():
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != trainer:
            pass
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=exit_on_sigterm_from_trainer, daemon=True, name="alexnet-sigterm").start()


class SyntheticImages:
    """``--data synthetic``: pool[i % P] of random images on the device, a mean colour per class plus noise."""

    POOL = 256

    def __init__(self, n: int, num_classes: int, size: int, seed: int, split: str, device: torch.device):
        colours = torch.randint(40, 216, (num_classes, 3, 1, 1), generator=torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed + (1 if split == "val" else 2))
        pool = min(n, self.POOL)
        self.labels = torch.arange(pool) % num_classes
        noise = torch.randint(-40, 41, (pool, 3, size, size), generator=g)
        self.images = (colours[self.labels] + noise).clamp(0, 255).to(torch.uint8).to(device)
        self.labels = self.labels.to(device)
        self.windows = torch.zeros(pool, 3, dtype=torch.int64, device=device)

    def batch(self, indices: np.ndarray) -> Batch:
        i = torch.from_numpy(indices % len(self.labels)).to(self.images.device)
        return self.images[i], self.labels[i], self.windows[i]


def in_batches(indices: np.ndarray, size: int, drop_last: bool) -> Iterable[np.ndarray]:
    stop = len(indices) - len(indices) % size if drop_last else len(indices)
    return (indices[i:i + size] for i in range(0, stop, size))


def synthetic(config: TrainConfig, ctx: distributed.Context, model: nn.Module, class_names: list[str]) -> TrainingData:
    """``--limit`` (else 2,560) and ``--val-limit`` (else 512) learnable random images; mean image 127.5."""
    train_size, val_size, size = config.limit or 2560, config.val_limit or 512, model.input_size
    train, val = (SyntheticImages(n, len(class_names), size, config.seed, split, ctx.device)
                  for n, split in ((train_size, "train"), (val_size, "val")))
    per_rank = config.batch_size // ctx.world
    transform = DeviceTransform(np.full((size, size, 3), 127.5, np.float32), None, None, size, pca_std=0.0,
                                normalization=model.normalization).to(ctx.device)

    def train_batches(epoch: int, start: int):
        order = rank_indices(train_size, seed=config.seed, epoch=epoch, rank=ctx.rank, world_size=ctx.world,
                             start=start)
        return map(train.batch, in_batches(order, per_rank, drop_last=True))

    def val_batches():
        order = rank_indices(val_size, rank=ctx.rank, world_size=ctx.world, shuffle=False, pad=False)
        return map(val.batch, in_batches(order, per_rank, drop_last=False))

    return TrainingData(class_names, train_size, val_size, steps_per_epoch(train_size, config, ctx.world),
                        train_batches, val_batches, transform)
