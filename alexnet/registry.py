"""Named architectures (as timm's registry): ``build_model(name, **options)`` and ``alexnet models``."""

import inspect
import json
import math
import typing
from typing import Callable, NamedTuple

import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.model import AlexNet, AlexNetOWT, TwoDeviceAlexNet, one_tower_channels


class ModelEntry(NamedTuple):
    builder: Callable[..., nn.Module]
    description: str
    defaults: dict


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, builder: Callable[..., nn.Module], description: str, **defaults) -> None:
    """Register ``builder`` under ``name``; ``defaults`` are the options this name fixes."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered already")
    _REGISTRY[name] = ModelEntry(builder, description, defaults)


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise UserError(f"unknown architecture {name!r}; the registry has: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def model_options(name: str) -> list[str]:
    """The option names ``build_model(name, ...)`` accepts."""
    return list(inspect.signature(model_entry(name).builder).parameters)


_BAD = object()


def _typed(value, hint):
    """``value`` as the type ``hint`` names, read strictly (a string or a YAML/JSON value), or _BAD."""
    if type(None) in typing.get_args(hint):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        (hint,) = (a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        text = str(value).lower() if isinstance(value, (bool, int, str)) else None
        return True if text in ("true", "yes", "on", "1") else False if text in ("false", "no", "off", "0") else _BAD
    if hint in (int, float, str):
        if hint is not str and isinstance(value, str):
            try:
                value = hint(value)
            except ValueError:
                return _BAD
        fits = isinstance(value, (int, float) if hint is float else hint) and not isinstance(value, bool)
        return hint(value) if fits and (hint is not float or math.isfinite(value)) else _BAD
    if typing.get_origin(hint) is tuple:
        items = [_typed(v, typing.get_args(hint)[0]) for v in value] if isinstance(value, (list, tuple)) else [_BAD]
        return _BAD if any(v is _BAD for v in items) else items
    return value  # no annotation, or one not read here: left to the builder's own checks


def _expected(hint) -> str:
    args = typing.get_args(hint)
    if type(None) in args:
        return _expected(next(a for a in args if a is not type(None))) + " or none"
    if typing.get_origin(hint) is tuple:
        return f"a list of {_expected(args[0]).split(' ', 1)[1]}s, e.g. [8,16,16,16,16]"
    return {bool: "true or false (or yes/no, 1/0)", int: "an integer", float: "a number",
            str: "a string"}.get(hint, str(hint))


# What can run, from the command line or a model file: each size in [1, its bound], and the network within
# MAX_PARAMETERS (8 GiB of float32 weights, 35 times the paper's 61M).
SIZES = {"num_classes": 100_000, "input_size": 1024, "fc_width": 16_384, "channels": 4096}
MAX_PARAMETERS = 2**31


def option_values(name: str, options: dict, flag: str = "--model-option") -> dict:
    """``options`` of ``name`` as the types its builder declares (``lrn="no"`` is False), sizes within :data:`SIZES`;
    else a UserError naming the option (as ``flag``) and what it takes."""
    if not isinstance(options, dict):
        raise UserError(f"{flag}s: expected a mapping of option names to values, not {type(options).__name__}")
    try:
        parameters = inspect.signature(model_entry(name).builder, eval_str=True).parameters
    except NameError:  # an annotation that does not resolve: the names alone
        parameters = inspect.signature(model_entry(name).builder).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise UserError(f"{flag} {unknown[0]}: architecture {name!r} has no option "
                        f"{', '.join(unknown)}; its options are: {', '.join(parameters)}")
    typed = {}
    for key, value in options.items():
        typed[key] = _typed(value, parameters[key].annotation)
        sizes = typed[key] if isinstance(typed[key], list) else [typed[key]]
        if typed[key] is _BAD or key in SIZES and any(v is not None and not 1 <= v <= SIZES[key] for v in sizes):
            each = "each " if isinstance(typed[key], list) else ""
            bound = f" ({each}from 1 to {SIZES[key]:,})" if key in SIZES else ""
            raise UserError(f"{flag} {key}={value}: expected {_expected(parameters[key].annotation)}{bound}")
    return typed


def checked_options(name: str, options: dict, flag: str = "--model-option") -> dict:
    """:func:`option_values`, the builder's own checks (on the meta device: no memory) and :data:`MAX_PARAMETERS`."""
    options = option_values(name, options, flag)
    try:
        with torch.device("meta"):
            model = build_model(name, **options)
    except UserError as err:
        raise UserError(f"{flag}: {err}") from None
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        given = ", ".join(f"{k}={v}" for k, v in options.items())
        raise UserError(f"{flag}s {given}: the network would have {count:,} parameters, more than "
                        f"{MAX_PARAMETERS:,} (8 GiB of float32 weights)")
    return options


def build_model(name: str = "alexnet", devices=None, **options) -> nn.Module:
    """A registered architecture with ``arch``, ``options``, ``input_size`` and ``normalization``; options read
    strictly (a UserError); ``devices=("cuda:0", "cuda:1")`` puts the two towers on two devices (section 3.2)."""
    entry = model_entry(name)
    options = option_values(name, options)
    try:
        model = entry.builder(**(entry.defaults | options))
        if devices is not None:
            model = TwoDeviceAlexNet.from_one_device(model, devices)
    except ValueError as err:  # the builders' checks of their options, and the two-device layout's
        raise UserError(f"architecture {name!r}: {err}") from None
    model.arch = name
    return model


register_model("alexnet", AlexNet, "the paper's network: two towers, LRN, overlapping pooling, 227x227 input")
register_model("alexnet-onetower", AlexNet, "section 3.2's comparison: one tower with half the kernels in "
               "conv1..conv4. We read 'half' as the paper's footnote 3 does: conv5 keeps its 256 kernels and "
               "fc6/fc7 their 4096 neurons, so that both nets have about the same number of parameters (59.8M "
               "against 61.0M)",
               towers=1, channels=one_tower_channels())
register_model("alexnet-owt", AlexNetOWT,
               "the 'one weird trick' single-tower net torchvision ships as alexnet (its state_dict keys), "
               "224x224 input")


def run(args) -> int:
    rows = [{"name": name, "description": e.description, "options": model_options(name), "defaults": e.defaults}
            for name, e in _REGISTRY.items()]  # json writes the tuples among the defaults as lists
    print(json.dumps(rows, indent=2) if args.json else "\n".join(f"{r['name']:18s} {r['description']}" for r in rows))
    return 0
