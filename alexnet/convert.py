"""`alexnet convert torchvision|onnx|caffe FILE OUT.pt`: published AlexNet weights as our model file.

``onnx`` and ``caffe`` are :mod:`alexnet.convert_onnx` and :mod:`alexnet.convert_caffe`; torchvision's
``alexnet-owt-7be5be79.pth`` is our ``alexnet-owt``, every key and shape checked.
"""

import argparse
from pathlib import Path

import torch

from alexnet.classes import imagenet_class_names
from alexnet.errors import UserError
from alexnet.modelfile import read_torch_file, save_model
from alexnet.registry import build_model

TORCHVISION_ARCH = "alexnet-owt"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth`` file, never running pickled code (``weights_only=True``)."""
    data = read_torch_file(path, "PyTorch weights file")
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path}: expected a state dict (names -> tensors)")
    return data


def check_state_dict(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: str | Path) -> None:
    """Same keys and shapes as ``expected``; the message lists what is missing, extra or misshapen."""
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    problems = [f"{what} {', '.join(keys)}" for what, keys in (("missing", missing), ("unexpected", extra)) if keys]
    problems += [f"{k}: {tuple(found[k].shape)} instead of {tuple(v.shape)}"
                 for k, v in expected.items() if k in found and found[k].shape != v.shape]
    if problems:
        raise UserError(f"{path}: not torchvision's alexnet weights: " + "; ".join(problems))


def convert_torchvision(weights: str | Path, out: str | Path) -> torch.nn.Module:
    """Write torchvision's alexnet ``weights`` to ``out`` as an ``alexnet-owt`` model file."""
    state = read_state_dict(weights)
    classes = imagenet_class_names()
    with torch.device("meta"):  # shapes only: the weights come from the file, no initialisation
        model = build_model(TORCHVISION_ARCH, num_classes=1000)
    check_state_dict(state, model.state_dict(), weights)
    model.load_state_dict(state, assign=True)
    model.class_names = classes
    save_model(model, out, class_names=classes)
    return model


def run(args: argparse.Namespace) -> int:
    if args.source == "onnx":
        from alexnet.convert_onnx import run as run_onnx

        return run_onnx(args)
    if args.source == "caffe":
        from alexnet.convert_caffe import run as run_caffe

        return run_caffe(args)
    if getattr(args, "mean", None) is not None:
        raise UserError("--mean: torchvision's weights normalise with ImageNet's per-channel mean and std; "
                        "--mean is for onnx and caffe")
    model = convert_torchvision(args.weights, args.out)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {TORCHVISION_ARCH}, {parameters:,} parameters, the 1000 ILSVRC-2012 classes")
    return 0
