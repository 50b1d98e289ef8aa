"""Speed knobs shared by training and benchmarks, each computing the same function as the plain path
(tests/test_speed.py); the optimizers' fast paths are in :mod:`alexnet.train.optim`."""

import ctypes
import ctypes.util

import torch
from torch import nn

from alexnet.cores import available_cores
from alexnet.lrn import LocalResponseNorm
from alexnet.strided_conv import SpaceToDepthGradConv2d

LRN_IMPLEMENTATIONS = ("ours", "torch")


class TorchLRN(nn.Module):
    """``nn.LocalResponseNorm`` computing what ``ours`` does (section 3.3): alpha times n (PyTorch
    averages where the paper sums), the channels split into towers by a reshape."""

    def __init__(self, ours: LocalResponseNorm):
        super().__init__()
        self.groups = ours.groups
        self.norm = nn.LocalResponseNorm(ours.size, alpha=ours.effective_alpha * ours.size, beta=ours.beta, k=ours.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.norm(x.reshape(n * self.groups, c // self.groups, h, w)).reshape(n, c, h, w)


def _replace_modules(model: nn.Module, applies, make) -> nn.Module:
    """``model`` with every submodule for which ``applies(module)`` replaced by ``make(module)``, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if applies(child):
                setattr(parent, name, make(child))
    return model


def torch_lrn(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with every LRN computed by ``nn.LocalResponseNorm``."""
    return _replace_modules(model, lambda m: isinstance(m, LocalResponseNorm), TorchLRN)


def apply_speed_options(model: nn.Module, *, channels_last: bool = False, compile: bool = False,
                        lrn: str = "ours", relu_inplace: bool = True, conv1_stride1_grad: bool = False) -> nn.Module:
    """``model``, changed in place, computing the same function faster: NHWC memory, in-place ReLUs,
    ``torch.compile``, ``lrn="torch"`` (:func:`torch_lrn`), conv1's weight gradient as a stride-1
    convolution (:mod:`alexnet.strided_conv`). Raises ValueError for an unknown ``lrn``. Call after
    moving the model to its device and before building the optimizer (the parameters and state_dict
    keys stay the same); with ``channels_last``, feed it channels-last inputs (:func:`to_device`)."""
    if lrn not in LRN_IMPLEMENTATIONS:
        raise ValueError(f"lrn must be one of {LRN_IMPLEMENTATIONS}, not {lrn!r}")
    if lrn == "torch":
        torch_lrn(model)
    if relu_inplace:  # safe: a ReLU follows a conv or linear layer, whose backward needs its input only
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = True
    if conv1_stride1_grad:
        _replace_modules(model, SpaceToDepthGradConv2d.applies_to, SpaceToDepthGradConv2d.from_conv)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model


def set_threads(threads: int | None = None) -> int:
    """``threads`` intra-op threads, default one per available core (more only adds switching); returns the count."""
    threads = threads or available_cores()
    torch.set_num_threads(threads)
    return threads


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse in this process and its forks (holding the peak until
    exit); returns whether it could (False where the C library is not glibc). Process-wide; call once, early."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def to_device(batch: torch.Tensor, device: torch.device | str, channels_last: bool = False) -> torch.Tensor:
    """A (pinned) host tensor on ``device`` without blocking the host; image batches (4-d) in
    channels-last memory when asked. Use the result only on ``device``'s current stream."""
    out = batch.to(torch.device(device), non_blocking=batch.is_pinned())
    return out.contiguous(memory_format=torch.channels_last) if channels_last and out.dim() == 4 else out
