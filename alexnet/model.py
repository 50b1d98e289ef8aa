"""The paper's network (section 3.5, Figure 2), its ablations, and the two-device layout (section 3.2).

``AlexNet()`` takes 227x227x3 (the paper's "224" is an erratum; see ``conv_rounding``). On one device
the towers are grouped convolutions (conv2, conv4, conv5: ``groups=2``) and LRN normalises within each
tower; ``TwoDeviceAlexNet`` puts each tower on a device of its own.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.lrn import LocalResponseNorm


@dataclass(frozen=True)
class ConvSpec:
    """One convolutional layer of the paper's table (section 3.5)."""
    name: str
    kernels: int          # over both towers
    size: int
    stride: int
    padding: int
    sees_both_towers: bool  # conv1 (the image), conv3: input from all maps of the layer below
    norm: bool            # LRN after the ReLU
    pool: bool            # max pooling after (the LRN, if any)
    bias: float           # initial bias: 1 in conv2, conv4, conv5 (section 5)


# The paper's table; kernel counts over both towers.
PAPER_CONVS = (
    ConvSpec("conv1", 96, 11, 4, 0, True, True, True, 0.0),
    ConvSpec("conv2", 256, 5, 1, 2, False, True, True, 1.0),
    ConvSpec("conv3", 384, 3, 1, 1, True, False, False, 0.0),
    ConvSpec("conv4", 384, 3, 1, 1, False, False, False, 1.0),
    ConvSpec("conv5", 256, 3, 1, 1, False, False, True, 1.0),
)


def one_tower_channels(channels=None) -> tuple[int, ...]:
    """Section 3.2's one-tower net: half the kernels of conv1-conv4 of ``channels`` (default: the
    paper's), conv5's kept, as the paper's footnote 3 reads "half" (about the same parameters)."""
    kernels = [spec.kernels for spec in PAPER_CONVS] if channels is None else list(channels)
    return tuple(c // 2 for c in kernels[:4]) + tuple(kernels[4:])


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
POOLINGS = {"overlapping": (3, 2), "non-overlapping": (2, 2)}  # (window z, stride s), section 3.4
CONV_ROUNDING = ("floor", "ceil")


class CeilPad(nn.Module):
    """Zero rows and columns at the bottom and right so that a convolution's output size is
    cuda-convnet's ``1 + ceil((2*pad + size - filter) / stride)``: 224 then gives conv1 55x55, the
    authors' code's reading of the paper's "224" (PAPER.md, "224 or 227")."""

    def __init__(self, kernel: int, stride: int, padding: int):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        # ceil(span / stride) * stride - span rows more, span = size + 2*pad - filter
        h, w = ((self.kernel - size - 2 * self.padding) % self.stride for size in x.shape[-2:])
        return F.pad(x, (0, w, 0, h)) if h or w else x


def _conv_specs(channels, drop_layer):
    specs = list(PAPER_CONVS) if channels is None else [
        replace(spec, kernels=c) for spec, c in zip(PAPER_CONVS, channels)]
    if drop_layer is not None:
        if drop_layer not in ("conv3", "conv4", "conv5"):
            raise ValueError(f"drop_layer must be one of conv3, conv4, conv5 (section 7), not {drop_layer!r}")
        dropped = specs.pop(int(drop_layer[-1]) - 1)
        if dropped.pool:  # conv5's pooling stays, on whatever layer is now last
            specs[-1] = replace(specs[-1], pool=True)
    return specs


def _conv_output(size, kernel, stride, padding, ceil):
    span = size + 2 * padding - kernel
    return 1 + (math.ceil(span / stride) if ceil else span // stride)


class AlexNet(nn.Module):
    """The network of the paper, section 3 (defaults), with the paper's ablations as options.

    Options (docs/model.md's table): ``activation`` relu (section 3.1) or tanh (Figure 1); ``lrn``
    (section 3.3) with ``lrn_scaling`` "paper" or "code" (alpha / n), ``lrn_k`` and ``lrn_across_towers``
    (Caffe's); ``pooling`` overlapping (section 3.4) or non-overlapping; ``dropout`` on fc6 and fc7
    (section 4.2); ``drop_layer`` conv3, conv4 or conv5 (section 7); ``towers`` 2 or 1 (section 3.2);
    ``conv_rounding`` floor or ceil (cuda-convnet's: 224 gives conv1 55x55); ``input_size`` (227);
    ``channels`` (kernels over both towers), ``fc_width``, ``fc_bias`` (section 5), ``num_classes``.
    """

    def __init__(self, num_classes: int = 1000, input_size: int = 227, conv_rounding: str = "floor",
                 activation: str = "relu", lrn: bool = True, lrn_scaling: str = "paper",
                 pooling: str = "overlapping", dropout: float = 0.5, drop_layer: str | None = None,
                 towers: int = 2, channels: tuple[int, ...] | None = None, fc_width: int = 4096,
                 fc_bias: float = 1.0, lrn_k: float = 2.0, lrn_across_towers: bool = False):
        super().__init__()
        choices = (("activation", activation, sorted(ACTIVATIONS)), ("pooling", pooling, sorted(POOLINGS)),
                   ("conv_rounding", conv_rounding, CONV_ROUNDING))
        for name, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        if towers not in (1, 2):
            raise ValueError(f"towers must be 1 or 2, not {towers!r}")
        if channels is not None and len(channels) != 5:
            raise ValueError(f"channels needs five kernel counts (conv1..conv5), got {channels!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        self.options = dict(num_classes=num_classes, input_size=input_size, conv_rounding=conv_rounding,
                            activation=activation, lrn=lrn, lrn_scaling=lrn_scaling, pooling=pooling,
                            dropout=dropout, drop_layer=drop_layer, towers=towers,
                            channels=list(channels) if channels is not None else None, fc_width=fc_width,
                            fc_bias=fc_bias, lrn_k=lrn_k, lrn_across_towers=lrn_across_towers)
        self.input_size, self.normalization = input_size, "mean_image"
        self.specs = _conv_specs(channels, drop_layer)
        ceil = conv_rounding == "ceil"
        pool_z, pool_s = POOLINGS[pooling]
        act = ACTIVATIONS[activation]

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch, size = 3, input_size
        for spec in self.specs:
            groups = 1 if spec.sees_both_towers else towers
            i = spec.name[4:]  # the layer's number, for the names of its ReLU, LRN and pooling
            if spec.kernels % towers or in_ch % groups:
                raise ValueError(f"{spec.name}: {in_ch} input maps and {spec.kernels} kernels do not "
                                 f"split into {towers} towers")
            if ceil and spec.stride > 1:
                layers[f"pad{i}"] = CeilPad(spec.size, spec.stride, spec.padding)
            layers[spec.name] = nn.Conv2d(in_ch, spec.kernels, spec.size, spec.stride, spec.padding, groups=groups)
            layers[f"act{i}"] = act()
            size = _conv_output(size, spec.size, spec.stride, spec.padding, ceil)
            if spec.norm and lrn:
                layers[f"norm{i}"] = LocalResponseNorm(5, 1e-4, 0.75, lrn_k, lrn_scaling,
                                                       groups=1 if lrn_across_towers else towers)
            if spec.pool:
                layers[f"pool{i}"] = nn.MaxPool2d(pool_z, pool_s, ceil_mode=ceil)
                size = _conv_output(size, pool_z, pool_s, 0, ceil)
            in_ch = spec.kernels
            if size < 1:
                raise ValueError(f"input_size={input_size} is too small: {spec.name} has no output left")
        self.features = nn.Sequential(layers)
        self.feature_shape = (in_ch, size, size)
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(in_ch * size * size, fc_width)), ("act6", act()), ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(fc_width, fc_width)), ("act7", act()), ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(fc_width, num_classes)),
        ]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Section 5: weights from N(0, 0.01^2); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0."""
        fc_bias = self.options["fc_bias"]
        biases = {s.name: s.bias for s in self.specs} | {"fc6": fc_bias, "fc7": fc_bias, "fc8": 0.0}
        for name, module in list(self.features.named_children()) + list(self.classifier.named_children()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.constant_(module.bias, biases[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self._flat_features(x))

    def fc7_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (fc7 after its ReLU, 4096-d), as used for Figure 4's retrieval."""
        return self.classifier[:5](self._flat_features(x))

    def _flat_features(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.flatten(self.features(x), 1)
        if features.shape[1] != self.classifier.fc6.in_features:  # one integer comparison per batch
            size = self.input_size
            raise ValueError(f"this network takes [N, 3, {size}, {size}] images (input_size={size}), not "
                             f"{list(x.shape)}; build it with input_size={x.shape[-1]} for that size")
        return features


class AlexNetOWT(nn.Module):
    """The single-tower "one weird trick" variant (Krizhevsky 2014) that torchvision ships as
    ``alexnet`` (docs/model.md), with torchvision's state_dict keys and shapes, so that its
    published weights load with ``strict=True``; PyTorch's default initialisation."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.options = dict(num_classes=num_classes, dropout=dropout)
        self.input_size, self.normalization = 224, "imagenet"
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def fc7_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[:6](torch.flatten(self.avgpool(self.features(x)), 1))


# --- Section 3.2: the towers on two devices -------------------------------------------------


class _Tower(nn.Module):
    """One tower's half of every convolutional and fully connected layer."""

    def __init__(self, net: AlexNet):
        super().__init__()
        layers = OrderedDict()
        for name, m in net.features.named_children():
            if isinstance(m, nn.Conv2d):
                m = nn.Conv2d(m.in_channels // m.groups, m.out_channels // 2, m.kernel_size, m.stride, m.padding)
            elif isinstance(m, LocalResponseNorm):
                m = LocalResponseNorm(m.size, m.alpha, m.beta, m.k, m.scaling, groups=1)
            layers[name] = m
        self.features = nn.Sequential(layers)
        fc6, fc7 = net.classifier.fc6, net.classifier.fc7
        self.fc6 = nn.Linear(fc6.in_features, fc6.out_features // 2)
        self.fc7 = nn.Linear(fc7.in_features, fc7.out_features // 2)


class TwoDeviceAlexNet(nn.Module):
    """The paper's network with tower A on ``devices[0]`` and tower B on ``devices[1]`` (section 3.2):
    activations cross devices only into conv3 and the fully connected layers; fc6 and fc7 are split
    by output neurons, fc8 lives on device A."""

    def __init__(self, net: AlexNet, devices=("cuda:0", "cuda:1")):
        super().__init__()
        if net.options["towers"] != 2:
            raise ValueError("only the two-tower network can run on two devices")
        if net.options.get("lrn_across_towers") and net.options.get("lrn"):
            raise ValueError("LRN across towers needs both towers' maps in one place: it runs on one device only")
        self.options, self.input_size, self.normalization = dict(net.options), net.input_size, net.normalization
        self.devices = tuple(torch.device(d) for d in devices)
        self.towers = nn.ModuleList([_Tower(net), _Tower(net)])
        # the layers past conv1 whose input is both towers' maps (conv3 in the paper)
        self.crossing = {spec.name for spec in net.specs[1:] if spec.sees_both_towers}
        self.act = net.classifier.act6
        self.drop6, self.drop7 = net.classifier.drop6, net.classifier.drop7
        self.fc8 = nn.Linear(net.classifier.fc8.in_features, net.classifier.fc8.out_features)
        self.load_state_dict(one_to_two_device_state(net.state_dict()))
        self.towers[0].to(self.devices[0])
        self.towers[1].to(self.devices[1])
        self.fc8.to(self.devices[0])

    @classmethod
    def from_one_device(cls, net: AlexNet, devices=("cuda:0", "cuda:1")) -> "TwoDeviceAlexNet":
        return cls(net, devices)

    def _both(self, a, b):
        """Each tower's view of the concatenation of both towers' maps (tower A's first)."""
        da, db = self.devices
        return torch.cat([a, b.to(da)], 1), torch.cat([a.to(db), b], 1)

    def fc7_features(self, x):
        a, b = x.to(self.devices[0]), x.to(self.devices[1])
        ta, tb = self.towers
        for name, ma in ta.features.named_children():
            if name in self.crossing:
                a, b = self._both(a, b)
            a, b = ma(a), tb.features.get_submodule(name)(b)
        a, b = self._both(torch.flatten(a, 1), torch.flatten(b, 1))
        a, b = self.drop6(self.act(ta.fc6(a))), self.drop6(self.act(tb.fc6(b)))
        a, b = self._both(a, b)
        a, b = self.drop7(self.act(ta.fc7(a))), self.drop7(self.act(tb.fc7(b)))
        return torch.cat([a, b.to(self.devices[0])], 1)

    def forward(self, x):
        return self.fc8(self.fc7_features(x))

    def one_device_state_dict(self) -> dict[str, torch.Tensor]:
        return two_to_one_device_state({k: v.cpu() for k, v in self.state_dict().items()})


def one_to_two_device_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One-device (grouped) weights to the two-device layout: split every layer by output maps."""
    out = {}
    for key, tensor in state.items():
        suffix = key.removeprefix("classifier.")
        if suffix.startswith("fc8."):
            out[suffix] = tensor.clone()
        else:
            out[f"towers.0.{suffix}"], out[f"towers.1.{suffix}"] = (half.clone() for half in tensor.chunk(2, 0))
    return out


def two_to_one_device_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`one_to_two_device_state`."""
    out = {}
    for key, tensor in state.items():
        suffix = key.removeprefix("towers.0.")
        target = suffix if suffix.startswith("features.") else f"classifier.{suffix}"
        if key.startswith("fc8."):
            out[target] = tensor
        elif suffix != key:
            out[target] = torch.cat([tensor, state[f"towers.1.{suffix}"]], 0)
    return out
