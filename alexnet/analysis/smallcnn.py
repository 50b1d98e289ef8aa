"""The four-layer CIFAR-10 network of Figure 1.

The paper says only "a four-layer convolutional neural network" (Figure 1). Its authors ran the
experiment with cuda-convnet, whose example CIFAR-10 net ``layers-18pct.cfg`` is exactly four
weight layers: three 5x5 convolutions with 32, 32 and 64 kernels (padding 2), each followed by
3x3 pooling with stride 2 (max, then average, average), and one fully connected layer to the
10 classes. The numbers here were read from the copies of cuda-convnet's
``example-layers/layers-18pct.cfg`` and ``layer-params-18pct.cfg`` in dnouri/cuda-convnet on
GitHub. We build that net, with these choices stated:

- the activation after each convolution is ReLU or tanh (Figure 1 compares the two; the rest
  of the net is identical). The file puts conv1's ReLU after pool1; max pooling commutes with
  any increasing function, so applying it before pooling is the same net;
- pooling windows start at the first pixel and the last window is cut at the border, as
  cuda-convnet pools (``start=0``, ``outputsX=0``: the count rounded up): 32 -> 16 -> 8 -> 4,
  which is PyTorch's ``ceil_mode`` without padding;
- layers-18pct's same-map contrast normalisation layers (``rnorm1``, ``rnorm2``) and its weight
  costs (``wc`` 0.004 on the convolutions, 1 on fc10) are left out: Figure 1 says "no
  regularization of any kind", and the comparison is about the activation;
- ``init="authors"`` (the default) draws every weight from a zero-mean Gaussian of its layer's
  own std, biases 0, as layers-18pct's ``initW``: conv1 0.0001, conv2 0.01, conv3 0.01, fc10
  0.01. ``init="pytorch"`` keeps PyTorch's default (Kaiming-uniform) initialisation.
  (layer-params-18pct's rates, epsW 0.001 and epsB 0.002 with momentum 0.9, are the update of
  :mod:`alexnet.analysis.figure1`.)
"""

from __future__ import annotations

import torch
from torch import nn

AUTHORS_INIT_STD = {"features.0": 1e-4, "features.3": 1e-2, "features.6": 1e-2, "classifier": 1e-2}
INITS = ("authors", "pytorch")


class FourLayerCNN(nn.Module):
    """conv5x5(32)-pool-conv5x5(32)-pool-conv5x5(64)-pool-fc(10) on 32x32 RGB images."""

    def __init__(self, activation: str = "relu", num_classes: int = 10, init: str = "authors"):
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be relu or tanh, not {activation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, not {init!r}")
        act = nn.ReLU if activation == "relu" else nn.Tanh

        def block(cin, cout, pool):
            return [nn.Conv2d(cin, cout, 5, padding=2), act(), pool(3, stride=2, ceil_mode=True)]

        self.features = nn.Sequential(
            *block(3, 32, nn.MaxPool2d),  # 32 -> 16
            *block(32, 32, nn.AvgPool2d),  # 16 -> 8
            *block(32, 64, nn.AvgPool2d),  # 8 -> 4
        )
        self.classifier = nn.Linear(64 * 4 * 4, num_classes)
        self.activation, self.init = activation, init
        if init == "authors":
            for name, module in self.named_modules():
                if name in AUTHORS_INIT_STD:
                    nn.init.normal_(module.weight, std=AUTHORS_INIT_STD[name])
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
