"""Speed knobs shared by training and benchmarks; each computes the same function as the plain path.

The paper trained for five to six days on two GTX 580s; what makes our training fast is not a
different network but the same function computed with less waste. Every knob here is an option
that leaves the mathematics unchanged (tests/test_speed.py checks outputs and gradients against the
plain path), so a trainer may switch any of them on without changing what it learns: see
:func:`apply_speed_options`, :func:`set_threads`, :func:`keep_freed_memory`, :func:`to_device` and
:func:`torch_lrn` (the plain baseline). The optimizers' fast paths live with the update rule, in
:mod:`alexnet.train.optim`.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.cores import available_cores
from alexnet.lrn import LocalResponseNorm
from alexnet.strided_conv import SpaceToDepthGradConv2d

LRN_IMPLEMENTATIONS = ("ours", "torch")


class TorchLRN(nn.Module):
    """``nn.LocalResponseNorm`` computing the same function as one of our :class:`LocalResponseNorm`
    modules: alpha is multiplied by n (PyTorch averages where the paper sums), and the channels
    are split into towers by a reshape (a free view of NCHW memory), which PyTorch's LRN lacks."""

    def __init__(self, ours: LocalResponseNorm):
        super().__init__()
        self.groups = ours.groups
        self.norm = nn.LocalResponseNorm(ours.size, alpha=ours.effective_alpha * ours.size,
                                         beta=ours.beta, k=ours.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.norm(x.reshape(n * self.groups, c // self.groups, h, w)).reshape(n, c, h, w)


def _replace_modules(model: nn.Module, applies, make) -> nn.Module:
    """``model`` (changed in place) with every submodule for which ``applies(module)`` replaced
    by ``make(module)``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if applies(child):
                setattr(parent, name, make(child))
    return model


def torch_lrn(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with every LRN computed by ``nn.LocalResponseNorm``."""
    return _replace_modules(model, lambda m: isinstance(m, LocalResponseNorm), TorchLRN)


def apply_speed_options(model: nn.Module, *, channels_last: bool = False, compile: bool = False,
                        lrn: str = "ours", relu_inplace: bool = True, conv1_stride1_grad: bool = False,
                        compile_mode: str | None = None) -> nn.Module:
    """``model`` with the given speed options; the function it computes is unchanged.

    ``channels_last``: convolutions and pooling read each pixel's channels contiguously (pays on
    GPUs and with oneDNN on CPUs); ``relu_inplace``: one full-size activation less to allocate and
    write per layer; ``compile``: fuses LRN, ReLU and pooling with their neighbours on the GPU;
    ``lrn``: ours or ``"torch"`` (:func:`torch_lrn`); ``conv1_stride1_grad``: conv1's weight
    gradient as a stride-1 convolution (:mod:`alexnet.strided_conv`; pays on CPUs).

    Changes ``model`` in place. Call after moving the model to its device and before building the
    optimizer: the parameters stay the same tensors (the modules swapped in for LRN have none, and
    conv1's replacement shares conv1's), and the state_dict keys stay the same. With ``compile=True``
    the result is the ``torch.compile`` wrapper (the module itself is ``result._orig_mod``);
    feed it channels-last inputs when ``channels_last`` is set (:func:`to_device` does).
    """
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
    if compile:
        model = torch.compile(model, mode=compile_mode)
    return model


def set_threads(threads: int | None = None) -> int:
    """One intra-op thread per available core unless ``threads`` says otherwise; returns the count.

    More threads than cores only adds switching (PyTorch may default to the machine's cores when
    the process is confined to fewer); loader workers are separate processes with their own.
    """
    threads = threads or available_cores()
    torch.set_num_threads(threads)
    return threads


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse in this process (and in processes it
    forks); returns whether it could (False where the C library is not glibc).

    Every training step allocates and frees the same large activations. By default glibc serves
    blocks above its mmap threshold (128 KiB, adapting up to 32 MiB) by mmap and unmaps them when
    freed, so the next step faults in every 4 KiB page of them again, and trims freed heap memory
    back to the system. With mmap and trimming off, freed blocks stay in the heap and are reused:
    about a sixth less CPU time for our step, near a third less for plain PyTorch's
    (BENCHMARKS.md). The price: the process keeps its peak memory until it exits. Process-wide;
    call once, early.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def to_device(batch: torch.Tensor, device: torch.device | str, channels_last: bool = False) -> torch.Tensor:
    """A (pinned) host tensor on ``device`` without blocking the host; image batches
    (4-d) in channels-last memory when asked. Use the result only on ``device``'s current stream."""
    device = torch.device(device)
    out = batch.to(device, non_blocking=batch.is_pinned())
    if channels_last and out.dim() == 4:
        out = out.contiguous(memory_format=torch.channels_last)
    return out
