"""Local response normalisation (paper section 3.3).

    b[i] = a[i] / (k + alpha * sum_{j in window(i)} a[j]^2) ** beta

with the window running over ``size`` adjacent channels at the same position, clipped at the
first and last channel: ``j`` from ``i - size // 2`` to ``i + (size - 1) // 2`` (for the paper's
n = 5: i-2 .. i+2). The paper's constants are k = 2, n = 5, alpha = 1e-4, beta = 0.75, and its
sum is a plain sum. PyTorch's ``nn.LocalResponseNorm`` (like Caffe and the authors' own
cuda-convnet code) divides alpha by n, so ``scaling="code"`` is offered to match what the
authors' code ran; the printed formula is the default.

Why not ``nn.LocalResponseNorm``: it builds the window sum with ``avg_pool3d`` over a padded copy
and leaves the backward pass to autograd, which keeps several full-size intermediates. Here the
window sum is ``size`` shifted additions and the backward pass is written out by hand from the
formula, which is faster forward+backward on the CPU (BENCHMARKS.md) and saves memory. It also
normalises within channel groups (``groups=2``: each tower normalises only its own maps, as
on the paper's two GPUs), and it always computes in float32 under autocast, because sums of
squared activations overflow float16.
"""

from __future__ import annotations

import torch
from torch import nn


def _window_sum(t: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Sum of ``t`` over channels ``c - before .. c + after`` (dim 2 of [N, G, C, H, W]), zero outside."""
    channels = t.shape[2]
    out = t.clone()
    for shift in range(1, before + 1):  # out[c] += t[c - shift]
        if shift < channels:
            out[:, :, shift:].add_(t[:, :, : channels - shift])
    for shift in range(1, after + 1):  # out[c] += t[c + shift]
        if shift < channels:
            out[:, :, : channels - shift].add_(t[:, :, shift:])
    return out


class _LRNFunction(torch.autograd.Function):
    """y = x * d^-beta with d = k + alpha * S, S the window sum of x^2; gradient by hand:

    dL/dx[j] = g[j] * d[j]^-beta - 2 * alpha * beta * x[j] * sum_{i : j in window(i)} g[i] * y[i] / d[i]
    """

    @staticmethod
    def forward(ctx, x, groups, size, alpha, beta, k):
        n, c, h, w = x.shape
        xg = x.reshape(n, groups, c // groups, h, w)
        before, after = size // 2, (size - 1) // 2
        d = _window_sum(xg * xg, before, after).mul_(alpha).add_(k)
        scale = d.pow(-beta)
        y = xg * scale
        ctx.save_for_backward(xg, d, scale)
        ctx.constants = (before, after, alpha, beta)
        return y.reshape(n, c, h, w)

    @staticmethod
    def backward(ctx, grad):
        xg, d, scale = ctx.saved_tensors
        before, after, alpha, beta = ctx.constants
        g = grad.reshape(xg.shape)
        t = (g * xg).mul_(scale).div_(d)  # g * y / d
        # j lies in window(i) exactly when i lies in the mirrored window of j.
        dx = torch.addcmul(g * scale, xg, _window_sum(t, after, before), value=-2.0 * alpha * beta)
        return dx.reshape(grad.shape), None, None, None, None, None


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels, paper section 3.3 (formula in the module doc).

    Args:
        size: n, the number of adjacent channels summed over (5).
        alpha: the paper's alpha (1e-4), multiplying the plain window sum.
        beta: the exponent (0.75).
        k: the additive constant (2).
        scaling: ``"paper"`` (plain sum, as printed) or ``"code"`` (alpha divided by ``size``, as
            in the authors' cuda-convnet code, Caffe and ``nn.LocalResponseNorm``).
        groups: normalise each of ``groups`` equal channel groups on its own (2 = one per tower).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 scaling: str = "paper", groups: int = 1):
        super().__init__()
        if scaling not in ("paper", "code"):
            raise ValueError(f"LRN scaling must be 'paper' or 'code', not {scaling!r}")
        if size < 1 or groups < 1:
            raise ValueError(f"LRN size and groups must be positive, got size={size}, groups={groups}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.scaling, self.groups = scaling, groups

    @property
    def effective_alpha(self) -> float:
        """The factor that multiplies the plain window sum of squares."""
        return self.alpha / self.size if self.scaling == "code" else self.alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] % self.groups:
            raise ValueError(f"LRN expects [N, C, H, W] with C divisible by groups={self.groups}, "
                             f"got {tuple(x.shape)}")
        compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        with torch.autocast(x.device.type, enabled=False):
            y = _LRNFunction.apply(x.to(compute_dtype), self.groups, self.size, self.effective_alpha,
                                   self.beta, self.k)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
                f"scaling={self.scaling!r}, groups={self.groups}")
