"""A locally connected layer, cuda-convnet's ``type=local`` (section 3.3's CIFAR-10 nets), which PyTorch
lacks: filters and biases not shared between output positions p, one unfold and one batched product:

    y[n, o, p] = b[o, p] + sum_{c, i, j} w[p, o, (c, i, j)] * x_padded[n, c, row(p) + i, col(p) + j]
"""

import math

import torch
from torch import nn


class LocallyConnected2d(nn.Module):
    """Unshared square filters on a square input of ``input_size`` (the weights depend on it); the other
    arguments as ``nn.Conv2d``'s. ``weight``: ``[out_positions, out_channels, in_channels * kernel_size**2]``
    in ``nn.Unfold``'s order (channel, row, column); ``bias``: ``[out_channels, out_h, out_w]``."""

    def __init__(self, in_channels: int, out_channels: int, input_size: int, kernel_size: int,
                 stride: int = 1, padding: int = 0):
        super().__init__()
        self.out_size = (input_size + 2 * padding - kernel_size) // stride + 1
        if self.out_size < 1:
            raise ValueError(f"a {kernel_size}x{kernel_size} window with padding {padding} does not fit "
                             f"an input of {input_size}x{input_size}")
        self.in_channels, self.out_channels, self.input_size = in_channels, out_channels, input_size
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        fan_in = in_channels * kernel_size**2
        self.weight = nn.Parameter(torch.empty(self.out_size**2, out_channels, fan_in))
        self.bias = nn.Parameter(torch.zeros(out_channels, self.out_size, self.out_size))
        bound = 1 / math.sqrt(fan_in)  # nn.Conv2d's default scale; convlocal sets cuda-convnet's own
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"LocallyConnected2d expects [N, {expected[0]}, {expected[1]}, {expected[2]}] "
                             f"inputs, got {tuple(x.shape)}")
        cols = nn.functional.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # [N, CKK, P]
        # [P, N, CKK] x [P, CKK, O] -> [P, N, O]; one contiguous copy of the columns first, else
        # bmm copies each position's strided matrix on its own (about 20% slower forward+backward)
        y = torch.bmm(cols.permute(2, 0, 1).contiguous(), self.weight.transpose(1, 2))
        y = y.permute(1, 2, 0).reshape(len(x), self.out_channels, self.out_size, self.out_size)
        return y + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}")
