"""`alexnet export MODEL OUT.onnx`: a network as ONNX, written only once onnxruntime's logits agree with PyTorch's."""

import argparse
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from alexnet.atomic import atomic_path
from alexnet.classes import num_outputs
from alexnet.convert_onnx import EXTRA, compare_with_onnxruntime
from alexnet.errors import UserError
from alexnet.inference import load_model


def export_onnx(model: torch.nn.Module, out: str | Path, seed: int = 0) -> tuple[float, float] | None:
    """Write ``model`` to ``out`` as ONNX (see the module doc); what :func:`compare_with_onnxruntime` returns."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it, and fails deep inside without it)
    except ImportError:
        raise UserError(f"alexnet export needs the onnx package: {EXTRA}") from None
    model = model.cpu().eval()
    size = model.input_size
    graph = io.BytesIO()
    # TorchScript's exporter: the default, dynamo, needs onnxscript, which no extra installs
    with warnings.catch_warnings():  # the tracer's notes on sizes it records as constants
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 3, size, size),), graph, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    x = np.random.default_rng(seed).normal(0.0, 60.0, (3, 3, size, size)).astype(np.float32)
    with torch.inference_mode():
        ours = model(torch.from_numpy(x)).numpy()
    checked = compare_with_onnxruntime(graph.getvalue(), {"images": x}, "logits", ours,
                                       "the logits of PyTorch and onnxruntime differ")
    with atomic_path(out, len(graph.getvalue())) as tmp:
        tmp.write_bytes(graph.getvalue())
    return checked


def run(args: argparse.Namespace) -> int:
    if Path(args.out).suffix != ".onnx":
        raise UserError(f"{args.out}: the ONNX file to write must end in .onnx")
    model = load_model(args.model)
    checked = export_onnx(model, args.out)
    size, classes = model.input_size, num_outputs(model)
    print(f"wrote {args.out}: {model.arch}, input 'images' [batch, 3, {size}, {size}] (mean-subtracted as "
          f"alexnet predict prepares it), output 'logits' [batch, {classes}]")
    print(f"verified against onnxruntime: largest logit difference {checked[0]:.3g} (float32 tolerance "
          f"{checked[1]:.3g})" if checked is not None else f"not verified: onnxruntime is not installed ({EXTRA})")
    return 0
