"""Named architectures (as timm's registry): ``build_model(name, **options)`` and ``alexnet models``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from alexnet.errors import UserError
from alexnet.model import AlexNet, AlexNetOWT, TwoDeviceAlexNet


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    defaults: dict


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, builder: Callable[..., nn.Module], description: str, **defaults) -> None:
    """Register ``builder`` under ``name``; ``defaults`` are the options this name fixes."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered already")
    _REGISTRY[name] = ModelEntry(name, builder, description, defaults)


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise UserError(f"unknown architecture {name!r}; the registry has: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def model_options(name: str) -> list[str]:
    """The option names ``build_model(name, ...)`` accepts."""
    return [p for p in inspect.signature(model_entry(name).builder).parameters]


def build_model(name: str = "alexnet", devices=None, **options) -> nn.Module:
    """Build a registered architecture; the result carries ``arch``, ``options`` (all of them,
    defaults resolved, enough to rebuild it), ``input_size`` and ``normalization``.

    ``devices=("cuda:0", "cuda:1")`` places the paper's two towers on two devices (section 3.2).
    """
    entry = model_entry(name)
    unknown = sorted(set(options) - set(model_options(name)))
    if unknown:
        raise UserError(f"architecture {name!r} has no option {', '.join(unknown)}; "
                        f"its options are: {', '.join(model_options(name))}")
    model = entry.builder(**(entry.defaults | options))
    if devices is not None:
        model = TwoDeviceAlexNet.from_one_device(model, devices)
    model.arch = name
    return model


register_model("alexnet", AlexNet, "the paper's network: two towers, LRN, overlapping pooling, 227x227 input")
register_model(
    "alexnet-onetower", AlexNet,
    "section 3.2's comparison: one tower with half the kernels in conv1..conv4. We read 'half' as the "
    "paper's footnote 3 does: conv5 keeps its 256 kernels and fc6/fc7 their 4096 neurons, so that "
    "both nets have about the same number of parameters (59.8M against 61.0M)",
    towers=1, channels=(48, 128, 192, 192, 256))
register_model("alexnet-owt", AlexNetOWT,
               "the 'one weird trick' single-tower net torchvision ships as alexnet (its state_dict keys), "
               "224x224 input")


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    import json

    rows = [{"name": e.name, "description": e.description, "options": model_options(e.name),
             "defaults": {k: list(v) if isinstance(v, tuple) else v for k, v in e.defaults.items()}}
            for e in _REGISTRY.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:18s} {row['description']}")
    return 0
