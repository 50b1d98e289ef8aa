"""Prepared datasets (``alexnet prepare``) and named ones (imagenette, cifar10) for training.

Loader workers decode and crop (random windows and mirrors for training, the centre for
validation, section 4.1), or with ``--decode device`` only read the JPEGs, which are decoded and
cropped on the device; a thread stages each batch on the device ahead of its step. On the device, the mean image is subtracted at the same window and
PCA colour noise added (sections 2 and 4.1).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from pathlib import Path

import numpy as np
import torch

from alexnet.data.dataset import PreparedDataset
from alexnet.data.download import DownloadError
from alexnet.data.loader import default_workers, make_loader
from alexnet.data.prepare import ensure_prepared
from alexnet.data.transforms import DeviceTransform
from alexnet.errors import UserError
from alexnet.train import distributed
from alexnet.train.config import TrainConfig
from alexnet.train.training_data import TrainingData


def prepared_dir(data: str) -> Path:
    """The prepared folder ``--data`` names; offline, a message that offers the alternatives."""
    try:
        return ensure_prepared(data)
    except DownloadError as err:
        raise UserError(f"--data {data}: {err}\nWithout network: train on random images with --data synthetic, "
                        "or on a dataset you have with --data PATH (a folder made by `alexnet prepare SOURCE "
                        "PATH`).") from None


def prepared_classes(config: TrainConfig) -> list[str]:
    return list(PreparedDataset(prepared_dir(config.data), "train").class_names)


def ignore_stop_signals(worker_id: int, trainer: int | None = None) -> None:
    """In loader workers: leave SIGINT, and SIGTERM from anyone but the training process, to it.

    Ctrl-C and schedulers (SLURM) signal every process of a job; a worker dying of that would make
    the trainer fail mid-step instead of finishing the step and saving. SIGTERM from the trainer
    itself still ends a worker: multiprocessing stops workers that way at exit, and would wait
    forever for one that ignored it. Where the sender cannot be known (no ``sigwaitinfo``, as on
    macOS) SIGTERM is ignored, and the workers exit when the trainer does.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # before the thread: it inherits the mask
    # ``trainer``: the training process's id, given by it; the worker's parent is not always it
    # (a forkserver, Python 3.14's default start method on Linux, is the parent then).
    threading.Thread(target=_exit_on_sigterm_from, args=(trainer or os.getppid(),), daemon=True,
                     name="alexnet-sigterm").start()


def _exit_on_sigterm_from(parent: int) -> None:
    while signal.sigwaitinfo({signal.SIGTERM}).si_pid != parent:
        pass
    os._exit(128 + signal.SIGTERM)


def _on_device(loader, device: torch.device):
    """The loader's batches on ``device``, staged ahead by a thread (on CUDA, on a side stream)."""
    loader.worker_init_fn = functools.partial(ignore_stop_signals, trainer=os.getpid())
    return loader.to(device)


def default_workers_per_process(device: torch.device) -> int:
    """Loader workers for one training process: the cores, shared among this machine's training
    processes; on a GPU one core of each share is left to the process itself, which launches
    the kernels and stages the batches (on a CPU the step's threads use every core anyway)."""
    share = default_workers() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, share - (1 if device.type == "cuda" else 0))


def prepared_data(config: TrainConfig, ctx: distributed.Context, size: int, normalization: str) -> TrainingData:
    root = prepared_dir(config.data)
    train, val = PreparedDataset(root, "train"), PreparedDataset(root, "val")
    if config.decode == "device":  # before the run folder is made
        from alexnet.data.device_decode import check_device_decoding

        check_device_decoding(train)
    per_rank = config.batch_size // ctx.world
    workers = config.workers
    if workers is None:
        workers = default_workers_per_process(ctx.device)
    common = dict(crop_size=size, rank=ctx.rank, world_size=ctx.world, workers=workers, decode=config.decode)
    transform = DeviceTransform.for_dataset(train, size, normalization=normalization, seed=config.seed,
                                            rank=ctx.rank, world_size=ctx.world,
                                            pca_std=config.pca_std).to(ctx.device)

    def train_batches(epoch: int, start: int):
        transform.set_epoch(epoch, start)
        return _on_device(make_loader(train, per_rank, train=True, seed=config.seed, epoch=epoch, start=start,
                                      limit=config.limit, drop_last=True, random_crop=config.random_crop,
                                      flip=config.flip, **common), ctx.device)

    def val_batches():
        return _on_device(make_loader(val, per_rank, train=False, limit=config.val_limit, **common), ctx.device)

    def count(n, limit):
        return min(n, limit) if limit else n

    return TrainingData(count(len(train), config.limit), count(len(val), config.val_limit), train_batches,
                        val_batches, transform, mean=np.asarray(train.mean, dtype=np.float32))
