"""`alexnet convert caffe FILE.caffemodel OUT.pt [--mean MEAN.binaryproto]`: Caffe's bvlc_alexnet.

The files are read by :mod:`alexnet.convert_caffe.protobuf`; here the network is checked to be
bvlc_alexnet (its computing layers, order and settings, and the weights of conv1 ... fc8), which
:mod:`alexnet.bvlc` turns into our ``alexnet`` and its model file.
"""

import argparse
import math
from pathlib import Path

import numpy as np

from alexnet.bvlc import BVLC_LAYERS, model_from_layers, save_bvlc_model
from alexnet.convert_caffe.protobuf import MAX_FILE_BYTES, CaffeLayer, read_caffemodel, read_mean_binaryproto
from alexnet.errors import UserError

# The computing layers of bvlc_alexnet's deploy.prototxt and their settings (caffe.proto's defaults
# where a message leaves one out); weight layers are matched by name, the others by type. The kinds
# in PASSED_OVER do not change what the network computes at test time; any other kind is refused.
CONV = "Convolution"
LRN = dict(local_size=5, alpha=1e-4, beta=0.75, k=1.0, norm_region=0)  # 0: ACROSS_CHANNELS
POOL = dict(pool=0, kernel=3, stride=2, pad=0)  # 0: MAX
BVLC_SEQUENCE = (
    ("conv1", CONV, dict(stride=4, pad=0, group=1)), ("relu1", "ReLU", {}), ("norm1", "LRN", LRN),
    ("pool1", "Pooling", POOL),
    ("conv2", CONV, dict(stride=1, pad=2, group=2)), ("relu2", "ReLU", {}), ("norm2", "LRN", LRN),
    ("pool2", "Pooling", POOL),
    ("conv3", CONV, dict(stride=1, pad=1, group=1)), ("relu3", "ReLU", {}),
    ("conv4", CONV, dict(stride=1, pad=1, group=2)), ("relu4", "ReLU", {}),
    ("conv5", CONV, dict(stride=1, pad=1, group=2)), ("relu5", "ReLU", {}), ("pool5", "Pooling", POOL),
    ("fc6", "InnerProduct", {}), ("relu6", "ReLU", {}), ("fc7", "InnerProduct", {}), ("relu7", "ReLU", {}),
    ("fc8", "InnerProduct", {}),
)
COMPUTING = {kind for _, kind, _ in BVLC_SEQUENCE}
PASSED_OVER = {"Data", "ImageData", "MemoryData", "HDF5Data", "WindowData", "DummyData", "Input", "Dropout",
               "Split", "Silence", "Flatten", "Softmax", "SoftmaxWithLoss", "Accuracy"}


def _one(values: dict, number: int, default, *alternatives: int):
    """A field's value: the repeated field's, else that of the ``alternatives`` (pad_h, pad_w, ...),
    else ``default``; a tuple where the values differ (height and width), which no check accepts."""
    found = values.get(number) or [values[n][0] for n in alternatives if values.get(n)]
    if not found:
        return default
    return found[0] if len(set(found)) == 1 else tuple(found)


def layer_settings(layer: CaffeLayer) -> dict:
    """The settings of ``layer`` that bvlc_alexnet fixes (see :data:`BVLC_SEQUENCE`)."""
    v = layer.settings
    if layer.type == CONV:  # ConvolutionParameter: pad 3, group 5, stride 6, pad_h/w 9/10, stride_h/w 13/14
        return dict(stride=_one(v, 6, 1, 13, 14), pad=_one(v, 3, 0, 9, 10), group=_one(v, 5, 1),
                    **({"dilation": _one(v, 18, 1)} if _one(v, 18, 1) != 1 else {}))
    if layer.type == "LRN":  # LRNParameter: local_size 1, alpha 2, beta 3, norm_region 4, k 5
        return dict(local_size=_one(v, 1, 5), alpha=_one(v, 2, 1.0), beta=_one(v, 3, 0.75),
                    k=_one(v, 5, 1.0), norm_region=_one(v, 4, 0))
    if layer.type == "Pooling":  # PoolingParameter: pool 1, kernel 2, stride 3, pad 4, kernel_h/w 5/6, ...
        return dict(pool=_one(v, 1, 0), kernel=_one(v, 2, None, 5, 6), stride=_one(v, 3, 1, 7, 8),
                    pad=_one(v, 4, 0, 9, 10), **({"global": 1} if _one(v, 12, 0) else {}))
    if layer.type == "InnerProduct" and _one(v, 6, 0):  # InnerProductParameter: transpose 6
        return {"transpose": 1}
    if layer.type == "ReLU" and _one(v, 1, 0.0):  # ReLUParameter: negative_slope 1
        return {"negative_slope": _one(v, 1, 0.0)}
    return {}


def _same(found: dict, expected: dict) -> list[str]:
    """What differs between a layer's settings and bvlc_alexnet's (floats as stored: float32)."""
    show = lambda x: f"{x:g}" if isinstance(x, float) else str(x)  # noqa: E731
    wrong = [f"{key} {show(found.get(key))} instead of {show(want)}" for key, want in expected.items()
             if not (isinstance(found.get(key), (int, float)) and math.isclose(found[key], want, rel_tol=1e-6))]
    return wrong + [f"{key} {show(found[key])}" for key in sorted(found.keys() - expected.keys())]


def check_bvlc_structure(layers: list[CaffeLayer]) -> None:
    """That the computing layers are bvlc_alexnet's, in its order, with its settings (CaffeNet has
    the same weights' shapes but pools before it normalises)."""
    other = next((layer for layer in layers if layer.type not in COMPUTING | PASSED_OVER), None)
    if other is not None:
        raise UserError(f"not bvlc_alexnet: layer {other.name} ({other.type}) is of a kind bvlc_alexnet has not")
    computing = [layer for layer in layers if layer.type in COMPUTING]
    for layer, (name, kind, expected) in zip(computing, BVLC_SEQUENCE):
        if layer.type != kind or (kind in (CONV, "InnerProduct") and layer.name != name):
            hint = (" (pooling before normalisation: CaffeNet's order, bvlc_reference_caffenet)"
                    if (layer.type, kind) == ("Pooling", "LRN") else "")
            raise UserError(f"not bvlc_alexnet: layer {layer.name} ({layer.type}) stands where bvlc_alexnet "
                            f"has {name} ({kind}){hint}")
        wrong = _same(layer_settings(layer), expected)
        if wrong:
            raise UserError(f"not bvlc_alexnet: {layer.name} ({layer.type}) has {', '.join(wrong)}")
    if len(computing) < len(BVLC_SEQUENCE):
        name, kind, _ = BVLC_SEQUENCE[len(computing)]
        raise UserError(f"not bvlc_alexnet: the network ends after {len(computing)} layers, before "
                        f"its {name} ({kind})")
    if len(computing) > len(BVLC_SEQUENCE):
        extra = computing[len(BVLC_SEQUENCE)]
        raise UserError(f"not bvlc_alexnet: layer {extra.name} ({extra.type}) comes after fc8")


def _squeeze(blob: np.ndarray, ndim: int, what: str) -> np.ndarray:
    """A blob down to ``ndim`` dimensions, dropping the leading 1s of Caffe's legacy 4-d shapes."""
    while blob.ndim > ndim and blob.shape[0] == 1:
        blob = blob[0]
    if blob.ndim != ndim:
        raise UserError(f"not bvlc_alexnet: {what} is {'x'.join(map(str, blob.shape))}, not {ndim}-dimensional")
    return blob


def bvlc_weights(layers: list[CaffeLayer]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """conv1 ... fc8's (weight, bias) in the layouts :func:`alexnet.bvlc.model_from_layers` takes."""
    weighted = [layer for layer in layers if layer.blobs]
    names = [layer.name for layer in weighted]
    twice = sorted({n for n in names if names.count(n) > 1})
    missing = [n for n in BVLC_LAYERS if n not in names]
    extra = [n for n in names if n not in BVLC_LAYERS]
    labels = ("layers named twice: ", "no weights for ", "weights of layers it has not: ")
    problems = [label + ", ".join(found) for label, found in zip(labels, (twice, missing, extra)) if found]
    if problems:
        raise UserError("not bvlc_alexnet: " + "; ".join(problems))
    found = {}
    for layer in weighted:
        if len(layer.blobs) != 2:
            raise UserError(f"not bvlc_alexnet: {layer.name} has {len(layer.blobs)} blobs, not a weight and a bias")
        weight, bias = layer.blobs
        ndim = 4 if layer.name.startswith("conv") else 2
        found[layer.name] = (_squeeze(weight, ndim, f"{layer.name}'s weight"),
                             _squeeze(bias, 1, f"{layer.name}'s bias"))
    return found


def read_mean(path: str | Path) -> np.ndarray:
    """``--mean`` of ``alexnet convert caffe|onnx``: Caffe's ``.binaryproto`` or a ``.npy`` (never
    unpickled); :func:`alexnet.bvlc.mean_rgb_image` checks the shape."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--mean {path}: no such file")
    if path.suffix.lower() == ".binaryproto":
        return read_mean_binaryproto(path)
    if path.suffix.lower() != ".npy":
        raise UserError(f"--mean {path}: expected Caffe's .binaryproto (imagenet_mean.binaryproto) or a .npy")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise UserError(f"--mean {path}: larger than {MAX_FILE_BYTES:,} bytes; a mean image is 786 kB")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise UserError(f"--mean {path}: not a plain numpy array ({err})") from None
    except Exception as err:  # noqa: BLE001 - truncated or damaged .npy
        raise UserError(f"--mean {path}: not a readable .npy file ({type(err).__name__}: {err})") from None


def convert_caffe(caffemodel: str | Path, out: str | Path, mean: str | Path | None = None):
    """Write Caffe's bvlc_alexnet (``caffemodel``) to ``out`` as a model file, with the mean image in
    ``mean`` (else Caffe's per-channel mean); returns the model."""
    layers = read_caffemodel(caffemodel)
    mean_bgr = read_mean(mean) if mean is not None else None
    try:
        check_bvlc_structure(layers)
        weights = bvlc_weights(layers)
    except UserError as err:
        raise UserError(f"{caffemodel}: {err}") from None
    model = model_from_layers(weights, str(caffemodel))
    save_bvlc_model(model, out, mean_bgr, str(caffemodel), mean_source=str(mean) if mean is not None else None)
    return model


def run(args: argparse.Namespace) -> int:
    mean = getattr(args, "mean", None)
    model = convert_caffe(args.weights, args.out, mean)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: alexnet with Caffe's bvlc_alexnet weights, {parameters:,} parameters, the 1000 "
          f"ILSVRC-2012 classes, the mean {'of ' + str(mean) if mean else 'Caffe publishes per channel (no --mean)'}; "
          f"it takes RGB (conv1's BGR weights permuted)")
    return 0
