"""Model files: the weights with what rebuilds the network (architecture name, options, class names).

Loading never executes pickled code (``torch.load(..., weights_only=True)``). Training checkpoints
carry the same keys, so ``load_model`` reads them too.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.io import atomic_torch_save
from alexnet.model import TwoDeviceAlexNet
from alexnet.registry import build_model

FORMAT = "alexnet-model"
REQUIRED = ("model", "arch", "options")


def model_record(model: nn.Module, class_names=None) -> dict:
    """What a model file holds of a model: weights (always in the one-device layout) and recipe."""
    state = model.one_device_state_dict() if hasattr(model, "one_device_state_dict") else model.state_dict()
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in model.options.items()}
    return {"format": FORMAT, "version": 1, "arch": model.arch, "options": options,
            "class_names": list(class_names) if class_names is not None else None,
            "model": {k: v.detach().cpu() for k, v in state.items()}}


def save_model(model: nn.Module, path: str | os.PathLike, class_names=None, **extra) -> None:
    """Write ``model`` (built by ``build_model``) to ``path`` atomically; ``extra`` keys are kept."""
    atomic_torch_save(model_record(model, class_names) | extra, path)


def read_model_file(path: str | os.PathLike) -> dict:
    """The dict in a model file or checkpoint, checked; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or pickled code we refuse to run
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err):
            reason = "it holds pickled objects other than tensors, which are never unpickled here"
        raise UserError(f"{path}: not a readable model file ({reason})") from None
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(record, dict) or k not in record]
        raise UserError(f"{path}: not an alexnet model file or checkpoint (missing {', '.join(missing)})")
    return record


def load_model(path: str | os.PathLike, map_location="cpu", devices=None) -> nn.Module:
    """Rebuild the network saved in ``path`` (a model file or a training checkpoint).

    The result has ``class_names`` (list or None), ``mean`` (the training set's mean image, or
    None) and is on ``map_location`` (or on two devices
    with ``devices=(a, b)``), in eval mode.
    """
    record = read_model_file(path)
    model = build_model(record["arch"], **record["options"])
    try:
        model.load_state_dict(record["model"])
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit architecture {record['arch']!r}: {err}") from None
    if devices is not None:
        model = TwoDeviceAlexNet.from_one_device(model, devices)
        model.arch = record["arch"]
    else:
        model.to(map_location)
    model.class_names = record.get("class_names")
    model.mean = record.get("mean")  # the training set's mean image, where the file holds it
    return model.eval()
