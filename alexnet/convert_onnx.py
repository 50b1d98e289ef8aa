"""`alexnet convert onnx FILE.onnx OUT.pt [--mean FILE]`: the ONNX model zoo's bvlc_alexnet as our model file.

The model zoo's ``bvlcalexnet-{3,6,7,8,9,12}.onnx`` (github.com/onnx/models: Caffe's model through
Caffe2) is checked node by node against :data:`SEQUENCE` and bvlc_alexnet's constants, layers taken
by position; anything else is refused naming the node. The zoo declares a 224 input and pads pool5
at the bottom and right (onnx/models issue 5); at Caffe's 227, which the weights need, that padding
is never read, so a pool is accepted when it gives Caffe's size at 227, and onnxruntime verifies the
graph at 227 (docs/evaluation.md). The file's size is bounded, and a tensor stored outside it or
holding other than its declared shape's bytes is refused before any tensor is read.
"""

import argparse
import math
from collections import namedtuple
from pathlib import Path

import numpy as np
import torch

from alexnet.bvlc import CAFFE_LRN, file_sha256, model_from_layers, save_bvlc_model
from alexnet.convert_caffe import read_mean  # --mean's one reader: .binaryproto or .npy
from alexnet.convert_caffe.protobuf import read_bounded
from alexnet.errors import UserError

EXTRA = "pip install 'alexnet[convert]'"
# Largest |ONNX logit - ours| relative to the largest |logit| (at least 1): float32 sums in another
# order differ by about 1e-6; a wrong channel order or LRN constant moves logits by percent.
TOLERANCE = 1e-4
INPUT_SIZE = 227

# (layer, kernel, stride, pad, group): deploy.prototxt's convolutions
CONVS = (("conv1", 11, 4, 0, 1), ("conv2", 5, 1, 2, 2), ("conv3", 3, 1, 1, 1), ("conv4", 3, 1, 1, 2),
         ("conv5", 3, 1, 1, 2))
POOL_OUTPUTS = {"pool1": (55, 27), "pool2": (27, 13), "pool5": (13, 6)}  # input and output size at 227
# The op sequence, Dropout (inference: identity) left out; "fc" is Gemm, or MatMul then Add.
SEQUENCE = ("Conv", "Relu", "LRN", "MaxPool", "Conv", "Relu", "LRN", "MaxPool", "Conv", "Relu", "Conv",
            "Relu", "Conv", "Relu", "MaxPool", "flatten", "fc", "Relu", "fc", "Relu", "fc")
STEP_NAMES = ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3",
              "conv4", "relu4", "conv5", "relu5", "pool5", "flatten", "fc6", "relu6", "fc7", "relu7", "fc8")
# The element types a tensor may have, one value per element in its typed field.
NUMBER_TYPES = ("FLOAT", "DOUBLE", "FLOAT16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
                "UINT64", "BOOL")


def _onnx():
    try:
        import onnx.numpy_helper
    except ImportError:
        raise UserError(f"alexnet convert onnx needs the onnx package: {EXTRA}") from None
    return onnx


# One layer of the graph: its op ("fc" for Gemm or MatMul+Add), its nodes, its output.
Step = namedtuple("Step", "op nodes output")


def read_onnx(path: str | Path):
    """The ModelProto in ``path``, its size bounded and nothing read from outside it."""
    onnx = _onnx()
    path = Path(path)
    data = read_bounded(path, "ONNX file", "bvlcalexnet-12.onnx is about 240 MB")
    try:
        model = onnx.load_model_from_string(bytes(data))  # from bytes: no external data followed
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and the like on a damaged file
        raise UserError(f"{path}: not a readable ONNX file: truncated or damaged "
                        f"({type(err).__name__}: {str(err)[:200]})") from None
    kinds = {getattr(onnx.TensorProto, k): k for k in NUMBER_TYPES}
    for name, tensor in _tensors(model, onnx.TensorProto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise UserError(f"{path}: {name} is stored outside the file (ONNX external data); "
                            f"only self-contained files are read, as the model zoo's bvlcalexnet-*.onnx")
        kind = kinds.get(tensor.data_type)  # refuse a declared shape not matching the data, before reading it
        if kind is None:
            raise UserError(f"{path}: {name} holds values of ONNX data type {tensor.data_type}, not one of "
                            f"{', '.join(NUMBER_TYPES)}")
        size = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        dims = list(tensor.dims)
        held = (len(tensor.raw_data) if tensor.HasField("raw_data")
                else len(getattr(tensor, onnx.helper.tensor_dtype_to_field(tensor.data_type))) * size)
        if min(dims, default=0) < 0 or math.prod(dims) * size != held:
            raise UserError(f"{path}: {name} declares shape {dims} of {kind} ({math.prod(dims) * size:,} bytes) "
                            f"but holds {held:,} bytes: the file is damaged")
    if not model.graph.node:
        raise UserError(f"{path}: not an ONNX model: its graph has no nodes (truncated?)")
    return model


def _tensors(message, tensor_type, owner: str = "the graph"):
    """(name, tensor) for every TensorProto however deep inside ``message``; an unnamed one named by its node."""
    if isinstance(message, tensor_type):
        yield message.name or f"the tensor of {owner}", message
        return
    if hasattr(message, "op_type"):  # a NodeProto
        owner = f"node {message.name or message.op_type} ({message.op_type})"
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in [value] if hasattr(value, "ListFields") else value:  # one message or a list
                yield from _tensors(item, tensor_type, owner)


def _attrs(node) -> dict:
    onnx = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _steps(graph, source: str) -> list[Step]:
    """The graph's nodes as one chain of layers (Dropout and Identity dropped, MatMul+Add one ``fc``,
    a final Softmax dropped); refuses a graph whose nodes do not feed one another in a line."""
    steps, current = [], None
    for node in (n for n in graph.node if n.op_type != "Constant"):
        if current is not None and (not node.input or node.input[0] != current):
            raise UserError(f"{source}: not bvlc_alexnet: node {node.name or node.op_type!r} ({node.op_type}) does "
                            f"not take the previous layer's output {current!r} (the network is one chain of layers)")
        current = node.output[0]
        if node.op_type == "Add" and steps and steps[-1].op == "matmul":
            steps[-1] = Step("fc", steps[-1].nodes + [node], current)
        elif node.op_type not in ("Dropout", "Identity"):
            op = {"Gemm": "fc", "MatMul": "matmul", "Reshape": "flatten", "Flatten": "flatten"}.get(
                node.op_type, node.op_type)
            steps.append(Step(op, [node], current))
    if steps and steps[-1].op == "Softmax":
        steps.pop()
    if len(steps) > 16 and [s.op for s in steps[14:16]] == ["MaxPool", "fc"]:  # Gemm on pool5 itself (old opsets)
        steps.insert(15, Step("flatten", [], steps[14].output))
    for i, (step, want) in enumerate(zip(steps, SEQUENCE)):
        if step.op != want:
            node = step.nodes[0]
            raise UserError(f"{source}: not bvlc_alexnet: layer {i + 1} (node {node.name or '?'}, "
                            f"{node.op_type}) where bvlc_alexnet has {STEP_NAMES[i]} ({want}); "
                            f"its op sequence is {' '.join(SEQUENCE)}")
    if len(steps) != len(SEQUENCE):
        more = (f"{len(steps) - len(SEQUENCE)} more after fc8: {steps[len(SEQUENCE)].nodes[0].op_type}"
                if len(steps) > len(SEQUENCE) else
                f"it ends after {STEP_NAMES[len(steps) - 1] if steps else 'nothing'}")
        raise UserError(f"{source}: not bvlc_alexnet: {len(steps)} layers instead of {len(SEQUENCE)} ({more})")
    return steps


def _check(cond: bool, source: str, node, what: str) -> None:
    if not cond:
        raise UserError(f"{source}: not bvlc_alexnet: node {node.name or node.op_type} ({node.op_type}): {what}")


def _flatten_batch(node, constants, width, source) -> int | None:
    """Reshape/Flatten before fc6 must flatten [N, C, 6, 6] to [N, C*36]; the batch it fixes, if any."""
    if node.op_type == "Flatten":
        _check(_attrs(node).get("axis", 1) == 1, source, node, "flattens from axis 1")
        return None
    shape = constants.get(node.input[1]) if len(node.input) > 1 else None
    _check(shape is not None and shape.ndim == 1 and len(shape) == 2, source, node,
           "reshapes to a constant [N, C*6*6]")
    batch, features = (int(v) for v in shape)
    _check(features in (width, -1) and batch >= -1 and (batch, features) != (-1, -1), source, node,
           f"reshapes to {shape.tolist()}, not [N, {width}]")
    return batch if batch > 0 else None


def _fc_weights(step: Step, constants, source) -> tuple[np.ndarray, np.ndarray]:
    """(weight [out, in], bias [out]) of a Gemm (transB read) or a MatMul followed by an Add."""
    def const(name, node):
        _check(name in constants, source, node, f"input {name!r} is not an initializer (weights in the file)")
        return constants[name]

    node = step.nodes[0]
    if node.op_type == "Gemm":
        a = _attrs(node)
        _check(a.get("transA", 0) == 0 and math.isclose(a.get("alpha", 1.0), 1) and
               math.isclose(a.get("beta", 1.0), 1), source, node, "a plain x W + b (transA 0, alpha 1, beta 1)")
        _check(len(node.input) == 3, source, node, "has a bias (a third input)")
        weight, bias = const(node.input[1], node), const(node.input[2], node)
        weight = weight if a.get("transB", 0) else weight.T
    else:
        weight, bias = const(node.input[1], node).T, const(step.nodes[1].input[1], step.nodes[1])
    return weight, bias.reshape(-1)


def bvlc_layers(model, source: str) -> tuple[dict, dict]:
    """(layers for :func:`alexnet.bvlc.model_from_layers`, what :func:`verify` needs) of a checked graph."""
    to_array = _onnx().numpy_helper.to_array
    graph = model.graph
    constants = {t.name: to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = _attrs(node).get("value")
            if value is not None:
                constants[node.output[0]] = to_array(value)
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise UserError(f"{source}: not bvlc_alexnet: {len(inputs)} image inputs "
                        f"({', '.join(i.name for i in inputs)}), expected one")
    steps = _steps(graph, source)
    by_name = dict(zip(STEP_NAMES, steps))
    first = by_name["conv1"].nodes[0]
    _check(first.input[0] == inputs[0].name, source, first, f"conv1 takes the image input {inputs[0].name!r}")
    layers = {}
    for name, kernel, stride, pad, group in CONVS:
        node = by_name[name].nodes[0]
        a = _attrs(node)
        _check(a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"), source, node, f"auto_pad {a.get('auto_pad')}")
        for key, want, default in (("kernel_shape", [kernel] * 2, [kernel] * 2), ("strides", [stride] * 2, [1, 1]),
                                   ("pads", [pad] * 4, [0] * 4), ("dilations", [1, 1], [1, 1])):
            _check(list(a.get(key, default)) == want, source, node, f"{name} has {key} {want}, this one "
                   f"{list(a.get(key, default))}")
        _check(a.get("group", 1) == group, source, node, f"{name} has {group} group(s), this one {a.get('group', 1)}")
        _check(len(node.input) == 3, source, node, f"{name} has a bias (a third input)")
        _check(node.input[1] in constants and node.input[2] in constants, source, node,
               "its weight and bias are initializers (stored in the file)")
        layers[name] = (constants[node.input[1]], constants[node.input[2]])
    for name in ("norm1", "norm2"):
        node = by_name[name].nodes[0]
        a = _attrs(node)
        found = dict(size=a.get("size"), alpha=a.get("alpha", 1e-4), beta=a.get("beta", 0.75), k=a.get("bias", 1.0))
        for key, want in CAFFE_LRN.items():
            _check(found[key] is not None and math.isclose(found[key], want, rel_tol=1e-6), source, node,
                   f"{name}'s LRN has {'bias' if key == 'k' else key} {found[key]}, bvlc_alexnet's {want} "
                   f"(size 5, alpha 1e-4, beta 0.75, bias 1)")
    for name, (size, want) in POOL_OUTPUTS.items():
        node = by_name[name].nodes[0]
        a = _attrs(node)
        _check(a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"), source, node, f"auto_pad {a.get('auto_pad')}")
        _check(list(a.get("kernel_shape", [])) == [3, 3] and list(a.get("strides", [1, 1])) == [2, 2], source, node,
               f"{name} is 3x3 max pooling at stride 2, this one {a.get('kernel_shape')} at {a.get('strides', [1, 1])}")
        _check(list(a.get("dilations", [1, 1])) == [1, 1], source, node, f"dilations {a.get('dilations')}")
        pads = list(a.get("pads", [0] * 4))
        _check(len(pads) == 4, source, node, f"pads {pads} (four values for a 2-d pool)")
        rounding = math.ceil if a.get("ceil_mode", 0) else math.floor
        outs = [rounding((size + pads[i] + pads[i + 2] - 3) / 2) + 1 for i in (0, 1)]
        _check(pads[:2] == [0, 0] and outs == [want, want], source, node,
               f"{name} maps {size}x{size} to {want}x{want} at 227, this one (pads {pads}) to {outs[0]}x{outs[1]}")
    for name in ("fc6", "fc7", "fc8"):
        layers[name] = _fc_weights(by_name[name], constants, source)
    width = int(np.asarray(layers["conv5"][0]).shape[0]) * 36
    flatten = by_name["flatten"].nodes
    batch = _flatten_batch(flatten[0], constants, width, source) if flatten else None
    return layers, {"input": inputs[0].name, "logits": by_name["fc8"].output, "batch": batch}


def compare_with_onnxruntime(graph: bytes, inputs: dict[str, np.ndarray], logits: str, ours: np.ndarray,
                             differ: str) -> tuple[float, float] | None:
    """(largest |logit| difference of ``graph`` run by onnxruntime on ``inputs`` from ``ours``, its bound
    :data:`TOLERANCE` times the largest logit); None without onnxruntime. A UserError beyond the bound,
    starting "verification failed: " and ``differ``."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        theirs = session.run([logits], inputs)[0]
    except Exception as err:  # noqa: BLE001 - onnxruntime's own errors (an op version it lacks)
        raise UserError(f"verification failed: onnxruntime cannot run the graph "
                        f"({str(err).strip().splitlines()[0][:300]}); nothing written") from None
    diff = float(np.abs(theirs - ours).max())
    bound = TOLERANCE * max(1.0, float(np.abs(theirs).max()))
    if not diff <= bound:
        raise UserError(f"verification failed: {differ} by {diff:.3g}, more than float32 tolerance "
                        f"({bound:.3g}); nothing written")
    return diff, bound


def verify(onnx_model, model: torch.nn.Module, io: dict, seed: int = 0) -> tuple[float, float] | None:
    """:func:`compare_with_onnxruntime` of the graph at Caffe's 227 and ``model`` (BGR for it, RGB for ours)."""
    onnx = _onnx()
    graph = onnx.ModelProto()
    graph.CopyFrom(onnx_model)
    for value in graph.graph.input:  # run at Caffe's 227 (the zoo declares 224), any batch
        if value.name == io["input"]:
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 4:
                dims[0].dim_param, dims[2].dim_value, dims[3].dim_value = "N", INPUT_SIZE, INPUT_SIZE
    del graph.graph.value_info[:]  # shapes inferred for the declared 224 would contradict 227
    del graph.graph.output[:]
    graph.graph.output.append(onnx.helper.make_tensor_value_info(io["logits"], onnx.TensorProto.FLOAT, None))
    batch = io["batch"] or 2
    x = np.random.default_rng(seed).normal(0.0, 60.0, (batch, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    with torch.inference_mode():
        ours = model.eval()(torch.from_numpy(x).flip(1)).numpy()  # BGR -> RGB
    return compare_with_onnxruntime(graph.SerializeToString(), {io["input"]: x}, io["logits"], ours,
                                    "the converted model's logits differ from onnxruntime's")


def convert_onnx(path: str | Path, out: str | Path, mean: str | Path | None = None, report=print):
    """Convert the bvlc_alexnet ONNX file ``path`` into the model file ``out`` (see the module doc)."""
    mean_bgr = read_mean(mean) if mean is not None else None
    onnx_model = read_onnx(path)
    layers, io = bvlc_layers(onnx_model, str(path))
    model = model_from_layers(layers, str(path))
    checked = verify(onnx_model, model, io)
    report(f"verified against onnxruntime: largest logit difference {checked[0]:.3g} (float32 tolerance "
           f"{checked[1]:.3g}: {TOLERANCE:g} of the largest logit)" if checked is not None else
           f"not verified: onnxruntime is not installed ({EXTRA})")
    save_bvlc_model(model, out, mean_bgr, str(path), mean_source=str(mean) if mean is not None else None)
    return model


def run(args: argparse.Namespace) -> int:
    model = convert_onnx(args.weights, args.out, args.mean)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: alexnet (bvlc_alexnet, Caffe options), {parameters:,} parameters, the 1000 "
          f"ILSVRC-2012 classes; {Path(args.weights).name} sha256 {file_sha256(args.weights)}")
    return 0
