"""cuda-convnet's layers-conv-local nets, behind section 3.3's CIFAR-10 result (13% and 11%).

Section 3.3: "On the CIFAR-10 dataset, a four-layer CNN achieved a 13% test error rate without
normalization and 11% with normalization." The authors ran it with cuda-convnet, whose example
nets ``layers-conv-local-13pct.cfg`` and ``layers-conv-local-11pct.cfg`` are these (read here
from the copies of cuda-convnet's ``example-layers/`` in dnouri/cuda-convnet on GitHub):

    data 24x24 (random crops of the 32x32 images)
    conv1   64 filters 5x5, padding 2, ReLU          initW 0.0001
    [rnorm1 cross-map, size 5, scale 0.001, pow 0.75]            (11pct only)
    pool1   max 3x3 stride 2 (24 -> 12; cuda-convnet rounds the count up: ceil mode)
    conv2   64 filters 5x5, padding 2, ReLU          initW 0.01
    [rnorm2 as rnorm1]                                           (11pct only)
    pool2   max 3x3 stride 2 (12 -> 6)
    local3  32 filters 3x3, padding 1, unshared, ReLU initW 0.04
    local4  32 filters 3x3, padding 1, unshared, ReLU initW 0.04
    fc10    10 outputs                               initW 0.01

``initW`` is the standard deviation of the Gaussian each layer's weights are drawn from; biases
start at 0 (cuda-convnet's default initB). That 11pct file is the first version the issue names
(the normalisation after conv1 and conv2, before pooling); cuda-convnet's later 11pct file moved
it after pool1, used size 9 and changed widths and weight decay, and is not built here.

cuda-convnet's response normalisation (``crossMap=1``) divides ``scale`` by ``size`` and adds 1
(as issue 12 states cuda-convnet's code; its source is not read here):
``b = a / (1 + scale/size * sum of a^2 over 5 adjacent maps) ** pow``, which is
``alexnet.lrn.LocalResponseNorm(size=5, alpha=0.001, beta=0.75, k=1, scaling="code")``.

The update (``layer-params-conv-local-13pct.cfg`` and ``-11pct.cfg``, identical): epsW 0.001,
epsB 0.002 (the bias rate twice the weight rate), momW = momB = 0.9, weight cost ``wc`` 0 for
conv1 and conv2 and 0.004 for local3, local4 and fc10 (biases have none). cuda-convnet's step,
inc = mom * inc - eps * (mean gradient + wc * w); w += inc, is PyTorch's SGD with momentum and
weight_decay = wc at a fixed rate, so :func:`param_groups` builds that.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.analysis.localconn import LocallyConnected2d

CROP = 24  # cuda-convnet's cifar-cropped provider, --crop-border=4: 24x24 crops of the 32x32 images
INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "local3": 0.04, "local4": 0.04, "fc10": 0.01}  # layers-*.cfg initW
WEIGHT_DECAY = {"conv1": 0.0, "conv2": 0.0, "local3": 0.004, "local4": 0.004, "fc10": 0.004}  # layer-params wc
LR = 0.001  # layer-params epsW, every layer
BIAS_LR_FACTOR = 2.0  # layer-params epsB = 0.002 = 2 x epsW
MOMENTUM = 0.9  # layer-params momW, momB
NORM = {"size": 5, "alpha": 0.001, "beta": 0.75, "k": 1.0, "scaling": "code"}  # layers-conv-local-11pct rnorm1/2
VARIANTS = ("without", "with")  # response normalisation: the 13pct net, the (first) 11pct net


def cuda_convnet_norm() -> nn.Module:
    """cuda-convnet's cross-map response normalisation of the 11pct net (see the module doc)."""
    from alexnet.lrn import LocalResponseNorm

    return LocalResponseNorm(**NORM)


class ConvLocalNet(nn.Module):
    """conv-[norm]-pool-conv-[norm]-pool-local-local-fc on 24x24 RGB crops (the module doc)."""

    def __init__(self, norm: bool = False, num_classes: int = 10):
        super().__init__()
        self.norm, self.num_classes = norm, num_classes
        self.conv1 = nn.Conv2d(3, 64, 5, padding=2)
        self.norm1 = cuda_convnet_norm() if norm else nn.Identity()
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 24 -> 12
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)
        self.norm2 = cuda_convnet_norm() if norm else nn.Identity()
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 12 -> 6
        self.local3 = LocallyConnected2d(64, 32, 6, 3, padding=1)
        self.local4 = LocallyConnected2d(32, 32, 6, 3, padding=1)
        self.fc10 = nn.Linear(32 * 6 * 6, num_classes)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """cuda-convnet's initialisation: Gaussian weights of each layer's ``INIT_STD``, biases 0."""
        for name, std in INIT_STD.items():
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, 0.0, std, generator=generator)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.norm1(torch.relu(self.conv1(x))))
        x = self.pool2(self.norm2(torch.relu(self.conv2(x))))
        x = torch.relu(self.local4(torch.relu(self.local3(x))))
        return self.fc10(x.flatten(1))


def param_groups(model: ConvLocalNet, lr: float = LR) -> list[dict]:
    """SGD parameter groups: each layer's weights at ``lr`` with its weight decay, biases at
    ``BIAS_LR_FACTOR * lr`` without decay (cuda-convnet's layer-params files)."""
    groups = []
    for name, decay in WEIGHT_DECAY.items():
        layer = getattr(model, name)
        groups.append({"params": [layer.weight], "lr": lr, "weight_decay": decay, "name": f"{name}.weight"})
        groups.append({"params": [layer.bias], "lr": BIAS_LR_FACTOR * lr, "weight_decay": 0.0,
                       "name": f"{name}.bias"})
    return groups


def make_optimizer(model: ConvLocalNet, lr: float = LR) -> torch.optim.SGD:
    """cuda-convnet's update rule as PyTorch SGD (the module doc)."""
    return torch.optim.SGD(param_groups(model, lr), lr=lr, momentum=MOMENTUM)
