"""`alexnet convert torchvision|onnx|caffe FILE OUT.pt`: published AlexNet weights as our model file.

``onnx`` and ``caffe`` are :mod:`alexnet.convert_onnx` and :mod:`alexnet.convert_caffe`; torchvision's
``alexnet-owt-7be5be79.pth`` is our ``alexnet-owt``, every key and shape checked.
"""

import argparse
import importlib
from pathlib import Path

import torch

from alexnet.classes import imagenet_class_names
from alexnet.errors import UserError
from alexnet.modelfile import read_torch_file, save_model
from alexnet.registry import build_model

TORCHVISION_ARCH = "alexnet-owt"


def convert_torchvision(weights: str | Path, out: str | Path) -> torch.nn.Module:
    """Write torchvision's alexnet ``weights`` (a state dict, never running pickled code) to ``out`` as an
    ``alexnet-owt`` model file; a message lists the keys missing, extra or misshapen."""
    state = read_torch_file(weights, "PyTorch weights file")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{weights}: expected a state dict (names -> tensors)")
    classes = imagenet_class_names()
    with torch.device("meta"):  # shapes only: the weights come from the file, no initialisation
        model = build_model(TORCHVISION_ARCH, num_classes=1000)
    expected = model.state_dict()
    missing, extra = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    problems = [f"{what} {', '.join(keys)}" for what, keys in (("missing", missing), ("unexpected", extra)) if keys]
    problems += [f"{k}: {tuple(state[k].shape)} instead of {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if problems:
        raise UserError(f"{weights}: not torchvision's alexnet weights: " + "; ".join(problems))
    model.load_state_dict(state, assign=True)
    model.class_names = classes
    save_model(model, out, class_names=classes)
    return model


def run(args: argparse.Namespace) -> int:
    commands = {"onnx": "alexnet.convert_onnx", "caffe": "alexnet.convert_caffe"}  # imported only when used
    if args.source in commands:
        return importlib.import_module(commands[args.source]).run(args)
    if getattr(args, "mean", None) is not None:
        raise UserError("--mean: torchvision's weights normalise with ImageNet's per-channel mean and std; "
                        "--mean is for onnx and caffe")
    model = convert_torchvision(args.weights, args.out)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {TORCHVISION_ARCH}, {parameters:,} parameters, the 1000 ILSVRC-2012 classes")
    return 0
