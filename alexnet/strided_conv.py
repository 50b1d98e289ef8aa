"""conv1's weight gradient as a stride-1 convolution: the same function, faster on CPUs.

conv1 (section 3.5: 96 kernels of 11x11x3 at stride 4) is the network's one strided convolution;
oneDNN computes its weight gradient several times slower than its forward pass (BENCHMARKS.md).
With the image cut into s x s blocks stacked as channels and the kernel zero-padded to a multiple
of s and cut the same way (11x11x3 becomes 3x3x48), a stride-s convolution is a stride-1 one:

    out[o, y, x] = sum_{c,i,j} w[o, c, i, j] * in[c, s*y + i, s*x + j]
                 = sum_{(c,r,t),p,q} w'[o, (c,r,t), p, q] * in'[(c,r,t), y + p, x + q]

with i = s*p + r, j = s*q + t. :class:`SpaceToDepthGradConv2d` runs the ordinary convolution
forward and the weight gradient through the rearranged one (equal up to summation order).
"""

import torch
import torch.nn.functional as F
from torch import nn


def space_to_depth(x: torch.Tensor, block: int, size: int) -> torch.Tensor:
    """``x`` [N, C, H, W] cut (or zero-padded) to ``size`` x ``size`` (a multiple of ``block``), its
    ``block`` x ``block`` blocks stacked as channels: [N, C*block*block, size/block, size/block]."""
    x = F.pad(x[:, :, :size, :size], (0, max(size - x.shape[3], 0), 0, max(size - x.shape[2], 0)))
    return F.pixel_unshuffle(x, block)


def depth_to_space(x: torch.Tensor, block: int, size: int) -> torch.Tensor:
    """The inverse of :func:`space_to_depth` on a kernel: [O, C*b*b, K/b, K/b] -> [O, C, size, size]."""
    return F.pixel_shuffle(x, block)[:, :, :size, :size]


class _SpaceToDepthGrad(torch.autograd.Function):
    """y = conv2d(x, w, b, stride, padding); dL/dw through the stride-1 rearrangement."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, s, p) if ctx.needs_input_grad[0] else None
        k = weight.shape[-1]
        kernel = -(-k // s) * s  # padded to a multiple of the stride
        size = (grad.shape[-1] - 1 + kernel // s) * s  # input rows the rearranged conv reads
        padded = F.pad(x, (p, p, p, p)) if p else x
        fmt = torch.channels_last if grad.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        blocks = space_to_depth(padded, s, size).contiguous(memory_format=fmt)
        _, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, blocks, space_to_depth(weight, s, kernel), [weight.shape[0]] if ctx.has_bias else None,
            [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, ctx.has_bias])
        return grad_x, depth_to_space(grad_w, s, k), grad_b, None, None


class SpaceToDepthGradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters and state_dict keys) whose weight gradient is a stride-1
    convolution (module docstring); under autocast it is the ordinary convolution."""

    @classmethod
    def applies_to(cls, conv: nn.Module) -> bool:
        """A plain square strided convolution: one group, no dilation, zero padding."""
        return (type(conv) is nn.Conv2d and conv.groups == 1 and conv.dilation == (1, 1)
                and conv.stride[0] == conv.stride[1] > 1 and conv.padding_mode == "zeros"
                and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1]
                and conv.kernel_size[0] == conv.kernel_size[1])

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "SpaceToDepthGradConv2d":
        """A module sharing ``conv``'s parameter tensors (an optimizer built on either sees them)."""
        new = cls.__new__(cls)
        new.__dict__.update(conv.__dict__)
        new._parameters = conv._parameters
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type) or x.dim() != 4:
            return super().forward(x)
        return _SpaceToDepthGrad.apply(x, self.weight, self.bias, self.stride[0], self.padding[0])
