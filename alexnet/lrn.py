"""Local response normalisation (paper section 3.3).

    b[i] = a[i] / (k + alpha * sum_{j in window(i)} a[j]^2) ** beta

with the window over ``size`` adjacent channels at the same position, clipped at the first and
last channel: ``j`` from ``i - size // 2`` to ``i + (size - 1) // 2`` (n = 5: i-2 .. i+2). The
paper's constants are k = 2, n = 5, alpha = 1e-4, beta = 0.75, with a plain sum; the authors'
cuda-convnet code (like Caffe and ``nn.LocalResponseNorm``) divides alpha by n: ``scaling="code"``.

Why not ``nn.LocalResponseNorm``: its window sum is ``avg_pool3d`` over a padded copy and autograd
keeps several full-size intermediates. Here the sum is ``size`` shifted fused multiply-adds and
the backward pass is written by hand, faster on the CPU (BENCHMARKS.md) and smaller. It also
normalises within channel groups (``groups=2``: one per tower, as on the paper's two GPUs) and
computes in float32 under autocast, because sums of squared activations overflow float16.
"""

import torch
import torch.nn.functional as F
from torch import nn


def _shifts(channels: int, before: int, after: int):
    """(target, source) channel slices pairing channel c with c - s (s = 1..before) and with
    c + s (s = 1..after), clipped to the ``channels`` that exist."""
    for shift in range(1, min(before, channels - 1) + 1):  # c with c - shift
        yield slice(shift, None), slice(None, channels - shift)
    for shift in range(1, min(after, channels - 1) + 1):  # c with c + shift
        yield slice(None, channels - shift), slice(shift, None)


class _LRNFunction(torch.autograd.Function):
    """y = x * d^-beta with d = k + alpha * S, S the window sum of x^2; gradient by hand:

    dL/dx[j] = g[j] * d[j]^-beta - 2 * alpha * beta * x[j] * sum_{i : j in window(i)} g[i] * y[i] / d[i]

    Both passes work on [N, G, C/G, H, W] views (G towers), one fused operation per window offset,
    in place where possible: on the CPU these layers are memory-bound.
    """

    @staticmethod
    def forward(ctx, x, groups, size, alpha, beta, k):
        n, c, h, w = x.shape
        xg = x.reshape(n, groups, c // groups, h, w)
        before, after = size // 2, (size - 1) // 2
        d = torch.addcmul(torch.tensor(k, dtype=x.dtype, device=x.device), xg, xg, value=alpha)
        for target, source in _shifts(xg.shape[2], before, after):
            d[:, :, target].addcmul_(xg[:, :, source], xg[:, :, source], value=alpha)
        scale = d.pow(-beta)
        y = xg * scale
        ctx.save_for_backward(xg, d, scale, y)
        ctx.constants = (before, after, alpha, beta)
        return y.reshape(n, c, h, w)

    @staticmethod
    def backward(ctx, grad):
        xg, d, scale, y = ctx.saved_tensors
        before, after, alpha, beta = ctx.constants
        g = grad.reshape(xg.shape)
        t = torch.mul(g, y).div_(d)  # g * y / d
        c = -2.0 * alpha * beta
        dx = torch.mul(g, scale).addcmul_(xg, t, value=c)
        # j lies in window(i) exactly when i lies in the mirrored window of j.
        for target, source in _shifts(xg.shape[2], after, before):
            dx[:, :, target].addcmul_(xg[:, :, target], t[:, :, source], value=c)
        return dx.reshape(grad.shape), None, None, None, None, None


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels, paper section 3.3 (formula and constants in the module
    doc); ``scaling`` "paper" or "code" (alpha / size); ``groups`` channel groups each normalised on its own."""

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
        if torch.onnx.is_in_onnx_export():  # the exporter's tracer drops the in-place window sums
            n, c, h, w = x.shape  # PyTorch's LRN (alpha / n), each group a batch entry of its own
            y = F.local_response_norm(x.reshape(n * self.groups, c // self.groups, h, w), self.size,
                                      self.effective_alpha * self.size, self.beta, self.k)
            return y.reshape(n, c, h, w)
        compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        with torch.autocast(x.device.type, enabled=False):
            y = _LRNFunction.apply(x.to(compute_dtype), self.groups, self.size, self.effective_alpha,
                                   self.beta, self.k)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
                f"scaling={self.scaling!r}, groups={self.groups}")
