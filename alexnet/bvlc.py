"""Caffe's ``bvlc_alexnet`` as our ``alexnet`` architecture: its layer list to a model, and its model file.

``bvlc_alexnet`` (57.1% top-1 / 80.2% top-5 on ILSVRC-2012 validation, centre crop, as its readme
publishes) is the paper's network with Caffe's LRN and pooling, options here (docs/model.md), and
BGR input: conv1's weights and the mean are permuted to RGB, so that the model takes RGB minus its
mean image like every other ``mean_image`` model. Shared by ``alexnet convert caffe|onnx``.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.classes import imagenet_class_names
from alexnet.errors import UserError
from alexnet.modelfile import save_model
from alexnet.registry import build_model

BVLC_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")

# The options that make our AlexNet compute what Caffe computes (the module doc says why).
CAFFE_OPTIONS = dict(input_size=227, conv_rounding="floor", lrn=True, lrn_scaling="code", lrn_k=1.0,
                     lrn_across_towers=True, towers=2, activation="relu", pooling="overlapping",
                     dropout=0.5, drop_layer=None, fc_bias=0.1)
CAFFE_LRN = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)  # deploy.prototxt's lrn_param, Caffe's k

# Caffe's per-channel mean, BGR 0-255, used when no mean file is given: ilsvrc_2012_mean.npy's
# channel averages, as Caffe's examples/00-classification.ipynb computes them.
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
IMAGE_SIZE = 256  # the mean image's side, and the project's images' (section 2)


def caffe_widths(layers: dict, source: str) -> dict:
    """The widths of a bvlc_alexnet layer list (conv kernels, fc width, classes), every shape checked
    against the architecture."""
    w = {}
    for name in BVLC_LAYERS:
        if name not in layers:
            raise UserError(f"{source}: not bvlc_alexnet: no layer {name} (its layers: {', '.join(layers) or 'none'})")
        weight, bias = (np.asarray(a) for a in layers[name])
        if not (np.issubdtype(weight.dtype, np.floating) and np.issubdtype(bias.dtype, np.floating)):
            raise UserError(f"{source}: not bvlc_alexnet: {name}'s blobs are {weight.dtype}/{bias.dtype}, not floats")
        if bias.ndim != 1 or weight.shape[:1] != bias.shape:
            raise UserError(f"{source}: not bvlc_alexnet: {name} has weight {list(weight.shape)} and bias "
                            f"{list(bias.shape)} (a bias of one value per output)")
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise UserError(f"{source}: {name} holds NaN or infinite weights")
        w[name] = weight
    extra = sorted(set(layers) - set(BVLC_LAYERS))
    if extra:
        raise UserError(f"{source}: not bvlc_alexnet: layers with weights that it has not: {', '.join(extra)}")
    bad = next((n for n in BVLC_LAYERS if w[n].ndim != (4 if n.startswith("conv") else 2)), None)
    if bad:
        raise UserError(f"{source}: not bvlc_alexnet: {bad} weight is {list(w[bad].shape)}, "
                        f"expected {'4' if bad.startswith('conv') else '2'} dimensions")
    channels = [int(w[name].shape[0]) for name in BVLC_LAYERS[:5]]
    odd = [(n, c) for n, c in zip(BVLC_LAYERS, channels) if c % 2]
    if odd:
        raise UserError(f"{source}: not bvlc_alexnet: {odd[0][0]} has {odd[0][1]} kernels, "
                        f"which do not split into two groups")
    c1, c2, c3, c4, c5 = channels
    width, classes = int(w["fc6"].shape[0]), int(w["fc8"].shape[0])
    expected = {"conv1": (c1, 3, 11, 11), "conv2": (c2, c1 // 2, 5, 5), "conv3": (c3, c2, 3, 3),
                "conv4": (c4, c3 // 2, 3, 3), "conv5": (c5, c4 // 2, 3, 3), "fc6": (width, c5 * 6 * 6),
                "fc7": (width, width), "fc8": (classes, width)}
    for name, shape in expected.items():
        if w[name].shape != shape:
            raise UserError(f"{source}: not bvlc_alexnet: {name} weight is {list(w[name].shape)}, "
                            f"expected {list(shape)}")
    return dict(channels=channels, fc_width=width, num_classes=classes)


def model_from_layers(layers: dict[str, tuple[np.ndarray, np.ndarray]], source: str) -> nn.Module:
    """Our ``alexnet`` with :data:`CAFFE_OPTIONS` and bvlc_alexnet's weights: ``layers`` maps each of
    :data:`BVLC_LAYERS` to (weight, bias) in Caffe's layouts (conv1's input channels BGR; the model
    takes RGB); widths and classes come from the checked shapes; ``source`` names the file in errors."""
    widths = caffe_widths(layers, source)
    with torch.device("meta"):  # shapes only: the weights come from the file
        model = build_model("alexnet", **CAFFE_OPTIONS, **widths)
    state = {}
    for name in BVLC_LAYERS:
        weight, bias = (torch.from_numpy(np.array(a, dtype=np.float32)) for a in layers[name])
        if name == "conv1":
            weight = weight.flip(1).contiguous()  # input channels B, G, R -> R, G, B
        section = "features" if name.startswith("conv") else "classifier"
        state[f"{section}.{name}.weight"], state[f"{section}.{name}.bias"] = weight, bias
    model.load_state_dict(state, assign=True, strict=True)
    return model.eval()


def mean_rgb_image(mean_bgr: np.ndarray | None, source: str) -> torch.Tensor:
    """Caffe's mean (``[3, 256, 256]`` BGR, or ``[3]`` per channel, 0-255; None: :data:`CAFFE_MEAN_BGR`)
    as the project's mean image: float32 ``[256, 256, 3]`` RGB, a per-channel mean broadcast."""
    mean = np.asarray(CAFFE_MEAN_BGR if mean_bgr is None else mean_bgr)
    if not np.issubdtype(mean.dtype, np.number) or np.iscomplexobj(mean):
        raise UserError(f"{source}: the mean holds {mean.dtype} values, not numbers")
    mean = mean.astype(np.float32)
    if mean.shape == (3,):
        mean = np.broadcast_to(mean[:, None, None], (3, IMAGE_SIZE, IMAGE_SIZE))
    if mean.shape != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise UserError(f"{source}: the mean is {'x'.join(map(str, mean.shape)) or 'a scalar'}; expected "
                        f"Caffe's 3x{IMAGE_SIZE}x{IMAGE_SIZE} BGR mean image (imagenet_mean.binaryproto) or 3 "
                        f"per-channel values, since the images here are {IMAGE_SIZE}x{IMAGE_SIZE} (section 2)")
    if not np.isfinite(mean).all() or mean.min() < 0 or mean.max() > 255:
        raise UserError(f"{source}: the mean holds values outside 0-255 (or NaN); expected Caffe's 0-255 scale")
    return torch.from_numpy(np.ascontiguousarray(mean[::-1].transpose(1, 2, 0)))  # BGR CHW -> RGB HWC


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_bvlc_model(model: nn.Module, out: str | os.PathLike, mean_bgr: np.ndarray | None, source: str,
                    mean_source: str | None = None) -> None:
    """Write ``model`` (from :func:`model_from_layers`) to ``out`` with its mean image, the 1000
    ILSVRC-2012 class names, and under ``converted`` the source file's name and SHA-256, the mean's
    origin (``mean_source``, None: Caffe's per-channel mean) and the Caffe options used."""
    mean = mean_rgb_image(mean_bgr, mean_source or source)
    classes = imagenet_class_names()
    if model.options["num_classes"] != len(classes):
        raise UserError(f"{source}: fc8 has {model.options['num_classes']} outputs, but bvlc_alexnet "
                        f"predicts the {len(classes)} ILSVRC-2012 classes")
    path = Path(source)
    converted = {
        "from": "bvlc_alexnet", "file": path.name,
        "sha256": file_sha256(path) if path.is_file() else None,
        "mean": (f"{Path(mean_source).name} (sha256 {file_sha256(mean_source)})" if mean_source
                 else f"Caffe's per-channel mean, BGR {list(CAFFE_MEAN_BGR)}"),
        "caffe_options": {k: v for k, v in model.options.items() if k in CAFFE_OPTIONS},
        "input": "RGB, 0-255, minus the mean image (conv1's BGR weights permuted to RGB)",
    }
    model.class_names, model.mean = classes, mean
    save_model(model, out, class_names=classes, mean=mean, converted=converted)
