"""The four-layer CIFAR-10 network of Figure 1 and section 3.3.

The paper says only "a four-layer convolutional neural network" (Figure 1) and "a four-layer
CNN" (section 3.3). Its authors ran these experiments with cuda-convnet, whose example CIFAR-10
net ``layers-18pct.cfg`` is exactly four weight layers: three 5x5 convolutions with 32, 32 and
64 kernels, each followed by 3x3 pooling with stride 2 (max, then average, average), and one
fully connected layer to the 10 classes. We build that net, with three choices stated here:

- the activation after each convolution is ReLU or tanh (Figure 1 compares the two; the rest
  of the net is identical);
- response normalisation, when asked for (section 3.3), is the paper's own (across channels,
  k=2, n=5, alpha=1e-4, beta=0.75, after the activation of conv1 and conv2, as in AlexNet),
  not cuda-convnet's same-map normalisation of layers-18pct;
- there is no regularisation: no weight decay, dropout or augmentation (Figure 1's protocol).
"""

from __future__ import annotations

import torch
from torch import nn


def response_norm() -> nn.Module:
    """Section 3.3's local response normalisation with the paper's constants."""
    from alexnet.lrn import LocalResponseNorm

    return LocalResponseNorm()


class FourLayerCNN(nn.Module):
    """conv5x5(32)-pool-conv5x5(32)-pool-conv5x5(64)-pool-fc(10) on 32x32 RGB images."""

    def __init__(self, activation: str = "relu", lrn: bool = False, num_classes: int = 10):
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be relu or tanh, not {activation!r}")
        act = nn.ReLU if activation == "relu" else nn.Tanh

        def block(cin, cout, pool, norm):
            layers = [nn.Conv2d(cin, cout, 5, padding=2), act()]
            if norm:
                layers.append(response_norm())
            layers.append(pool(3, stride=2, padding=1))
            return layers

        self.features = nn.Sequential(
            *block(3, 32, nn.MaxPool2d, lrn),  # 32 -> 16
            *block(32, 32, nn.AvgPool2d, lrn),  # 16 -> 8
            *block(32, 64, nn.AvgPool2d, False),  # 8 -> 4
        )
        self.classifier = nn.Linear(64 * 4 * 4, num_classes)
        self.activation, self.lrn = activation, lrn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
