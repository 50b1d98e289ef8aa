"""Process-wide settings a run makes: seeds, denormals, kept memory, deterministic kernels,
cuDNN autotuning, TF32, channels-last memory and autocast. Speed settings compute the same
function as the plain path (docs/speed.md)."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from alexnet import speed
from alexnet.train.config import TrainConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_backends(config: TrainConfig, device: torch.device) -> None:
    # Denormal floats (below 1e-38, common with the paper's small initial weights) run many times
    # slower on CPUs; flushing them to zero changes nothing measurable and speeds a CPU step ~1.8x.
    torch.set_flush_denormal(True)
    if device.type == "cpu":
        # Every step allocates and frees the same large activations; by default glibc returns
        # them to the system and the next step faults their pages in again, which costs more
        # than the arithmetic of a memory-bound layer: kept, the CPU step is about 1.2x faster
        # (BENCHMARKS.md). The process keeps its peak memory, which every step reaches anyway.
        speed.keep_freed_memory()
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed input size
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic


def channels_last(config: TrainConfig, device: torch.device) -> bool:
    """Whether the run uses channels-last memory: as asked, else where it pays (oneDNN on the CPU,
    cuDNN on CUDA; docs/speed.md). Speed only: the function computed is the same."""
    return config.channels_last if config.channels_last is not None else device.type in ("cpu", "cuda")


def autocast(config: TrainConfig, device: torch.device):
    if config.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if config.amp == "bf16" else torch.float16)
