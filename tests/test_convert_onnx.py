"""`alexnet convert onnx`: Caffe's bvlc_alexnet from the ONNX model zoo as our `alexnet` (issue 13).

No download: the tests build ONNX graphs with bvlc_alexnet's op sequence and the zoo's names
(``data_0``, ``conv1_w_0`` ... ``fc8_b_0``, ``OC2_DUMMY_1``, ``prob_1``, pool5 padded at the end) at
reduced width (conv 8/16/24/24/16, fc 32, the 1000 classes) with random weights, and check the
converted model against onnxruntime running the same graph.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet import build_model
from alexnet.bvlc import CAFFE_MEAN_BGR, model_from_layers, save_bvlc_model
from alexnet.classes import imagenet_class_names
from alexnet.convert_onnx import convert_onnx
from alexnet.errors import UserError
from alexnet.inference import load_model, predictions
from alexnet.lrn import LocalResponseNorm
from tests.kit import StandInDataset, alexnet_command

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CHANNELS, WIDTH, CLASSES = (8, 16, 24, 24, 16), 32, 1000
CONVS = {"conv1": (11, 4, 0, 1), "conv2": (5, 1, 2, 2), "conv3": (3, 1, 1, 1), "conv4": (3, 1, 1, 2),
         "conv5": (3, 1, 1, 2)}


def bvlc_weights(seed: int = 0, channels=CHANNELS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random weights in Caffe's layouts (conv1's inputs BGR), scaled so that no layer dies or explodes."""
    rng = np.random.default_rng(seed)
    c1, c2, c3, c4, c5 = channels
    shapes = {"conv1": (c1, 3, 11, 11), "conv2": (c2, c1 // 2, 5, 5), "conv3": (c3, c2, 3, 3),
              "conv4": (c4, c3 // 2, 3, 3), "conv5": (c5, c4 // 2, 3, 3), "fc6": (WIDTH, c5 * 36),
              "fc7": (WIDTH, WIDTH), "fc8": (CLASSES, WIDTH)}
    return {name: ((rng.normal(0, 1, s) / np.sqrt(np.prod(s[1:]))).astype(np.float32),
                   rng.normal(0.1, 0.1, s[0]).astype(np.float32)) for name, s in shapes.items()}


def bvlc_graph(weights, *, lrn=(5, 1e-4, 0.75, 1.0), extra_conv=False, pool5_pads=(0, 0, 1, 1),
               gemm_trans_b=True, softmax=True):
    """An ONNX model laid out as the zoo's bvlcalexnet-12.onnx (names, Reshape, Dropout, Softmax)."""
    nodes, inits = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    x = "data_0"
    for i, name in enumerate(CONVS, 1):
        k, s, p, g = CONVS[name]
        w, b = weights[name]
        nodes.append(helper.make_node("Conv", [x, init(f"{name}_w_0", w), init(f"{name}_b_0", b)], [f"{name}_1"],
                                      kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=g, name=name))
        nodes.append(helper.make_node("Relu", [f"{name}_1"], [f"{name}_2"]))
        x = f"{name}_2"
        if i in (1, 2):
            size, alpha, beta, bias = lrn
            nodes.append(helper.make_node("LRN", [x], [f"norm{i}_1"], size=size, alpha=alpha, beta=beta,
                                          bias=bias, name=f"norm{i}"))
            x = f"norm{i}_1"
        if i in (1, 2, 5):
            pads = list(pool5_pads) if i == 5 else [0, 0, 0, 0]
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}_1"], kernel_shape=[3, 3], strides=[2, 2],
                                          pads=pads, name=f"pool{i}"))
            x = f"pool{i}_1"
        if i == 5 and extra_conv:
            c = weights["conv5"][0].shape[0]
            nodes.append(helper.make_node("Conv", [x, init("conv6_w_0", np.zeros((c, c, 1, 1), np.float32))],
                                          ["conv6_1"], kernel_shape=[1, 1], name="conv6"))
            x = "conv6_1"
    nodes.append(helper.make_node("Reshape", [x, init("OC2_DUMMY_1", np.array([-1, CHANNELS[4] * 36]))],
                                  ["OC2_DUMMY_0"]))
    x = "OC2_DUMMY_0"
    for name in ("fc6", "fc7", "fc8"):
        w, b = weights[name]
        if gemm_trans_b:
            nodes.append(helper.make_node("Gemm", [x, init(f"{name}_w_0", w), init(f"{name}_b_0", b)],
                                          [f"{name}_1"], transB=1, name=name))
        else:
            nodes.append(helper.make_node("Gemm", [x, init(f"{name}_w_0", w.T.copy()), init(f"{name}_b_0", b)],
                                          [f"{name}_1"], name=name))
        x = f"{name}_1"
        if name != "fc8":
            nodes.append(helper.make_node("Relu", [x], [f"{name}_2"]))
            nodes.append(helper.make_node("Dropout", [f"{name}_2"], [f"{name}_3", f"_{name}_mask_1"]))
            x = f"{name}_3"
    if softmax:
        nodes.append(helper.make_node("Softmax", [x], ["prob_1"], axis=1))
        x = "prob_1"
    graph = helper.make_graph(nodes, "bvlc_alexnet",
                              [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 224, 224])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, CLASSES])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])


def save(model, path):
    onnx.save(model, str(path))
    return path


def onnx_logits(model, x: np.ndarray) -> np.ndarray:
    """fc8's output of the graph, run by onnxruntime on a 227x227 BGR input."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    dims = copy.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[2].dim_value, dims[3].dim_value = "N", 227, 227
    del copy.graph.output[:]
    copy.graph.output.append(helper.make_tensor_value_info("fc8_1", TensorProto.FLOAT, None))
    session = ort.InferenceSession(copy.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["fc8_1"], {"data_0": x})[0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    graph = bvlc_graph(bvlc_weights())
    path = save(graph, folder / "bvlcalexnet-12.onnx")
    lines = []
    convert_onnx(path, folder / "bvlc.pt", report=lines.append)
    return folder, graph, lines


def test_the_converted_model_computes_the_onnx_graphs_logits(converted):
    folder, graph, lines = converted
    assert lines and lines[0].startswith("verified against onnxruntime")
    model = load_model(folder / "bvlc.pt")
    assert model.arch == "alexnet" and model.input_size == 227
    assert model.options["lrn_k"] == 1.0 and model.options["lrn_across_towers"] and model.options["lrn_scaling"] == "code"
    x = np.random.default_rng(5).normal(0, 60, (3, 3, 227, 227)).astype(np.float32)  # mean-subtracted BGR
    with torch.no_grad():
        ours = model(torch.from_numpy(x).flip(1)).numpy()  # the same pixels as RGB
    theirs = onnx_logits(graph, x)
    assert np.abs(theirs).max() > 1  # logits that say something
    assert np.abs(ours - theirs).max() < 1e-4 * np.abs(theirs).max()


def test_the_model_file_holds_caffes_mean_as_rgb_the_class_names_and_the_source(converted):
    folder, _, _ = converted
    record = torch.load(folder / "bvlc.pt", weights_only=True)
    assert record["class_names"] == imagenet_class_names()
    assert record["mean"].shape == (256, 256, 3) and record["mean"].dtype == torch.float32
    assert record["mean"][17, 99].tolist() == pytest.approx(CAFFE_MEAN_BGR[::-1])
    source = record["converted"]
    assert source["file"] == "bvlcalexnet-12.onnx" and len(source["sha256"]) == 64
    assert source["caffe_options"]["lrn_k"] == 1.0


def test_a_mean_image_is_stored_converted_from_bgr_to_rgb(tmp_path):
    mean = np.random.default_rng(1).uniform(90, 130, (3, 256, 256)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    path = save(bvlc_graph(bvlc_weights()), tmp_path / "a.onnx")
    convert_onnx(path, tmp_path / "a.pt", tmp_path / "mean.npy", report=lambda line: None)
    stored = torch.load(tmp_path / "a.pt", weights_only=True)["mean"].numpy()
    np.testing.assert_array_equal(stored, mean[::-1].transpose(1, 2, 0))


def test_evaluate_ten_crops_the_converted_model_at_227_and_equals_the_graph_on_the_same_crops(converted):
    folder, graph, _ = converted
    model = load_model(folder / "bvlc.pt")
    data = StandInDataset(count=2, size=256, num_classes=1000, seed=3)
    data.classes = imagenet_class_names()
    data.mean = np.zeros((256, 256, 3), np.float32)  # not used: the model file's mean is
    (center,), _ = zip(*predictions([model], data, crops="center", device="cpu", workers=0))
    (ten,), _ = zip(*predictions([model], data, crops="ten", device="cpu", workers=0))
    mean = model.mean.numpy()
    crops = [(14, 14, False), (0, 0, False), (0, 29, False), (29, 0, False), (29, 29, False)]
    expected_center, expected_ten = [], []
    for image in data.images:
        inputs = []
        for flip in (False, True):
            for top, left, _ in crops:
                window = (image.astype(np.float32) - mean)[top:top + 227, left:left + 227]
                inputs.append(window[:, ::-1] if flip else window)
        bgr = np.stack(inputs)[..., ::-1].transpose(0, 3, 1, 2).copy()
        probs = torch.softmax(torch.from_numpy(onnx_logits(graph, bgr)), 1).numpy()
        expected_center.append(probs[0])
        expected_ten.append(probs.mean(0))
    np.testing.assert_allclose(center.numpy(), np.stack(expected_center), atol=1e-5)
    np.testing.assert_allclose(ten.numpy(), np.stack(expected_ten), atol=1e-5)


def test_predict_names_imagenet_classes_with_the_converted_model(converted, capsys):
    from PIL import Image

    folder, _, _ = converted
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(folder / "cat.jpg")
    ran = alexnet_command(capsys, "predict", folder / "bvlc.pt", folder / "cat.jpg", "--json", "--device", "cpu")
    assert ran.returncode == 0, ran.stderr
    (result,) = json.loads(ran.stdout)
    names = imagenet_class_names()
    assert len(result["predictions"]) == 5 and all(p["class"] == names[p["index"]] for p in result["predictions"])


def test_the_command_converts_prints_the_check_and_the_files_sha256(tmp_path, capsys):
    path = save(bvlc_graph(bvlc_weights(), gemm_trans_b=False, softmax=False), tmp_path / "b.onnx")
    ran = alexnet_command(capsys, "convert", "onnx", path, tmp_path / "b.pt")
    assert ran.returncode == 0, ran.stderr
    assert "verified against onnxruntime: largest logit difference" in ran.stdout
    assert "b.onnx sha256 " in ran.stdout and (tmp_path / "b.pt").is_file()


@pytest.mark.parametrize(("change", "message"), [
    (dict(extra_conv=True), r"layer 16 \(node conv6, Conv\) where bvlc_alexnet has flatten"),
    (dict(lrn=(5, 1e-4, 0.75, 2.0)), r"node norm1 \(LRN\): norm1's LRN has bias 2.0"),
    (dict(lrn=(3, 1e-4, 0.75, 1.0)), r"node norm1 \(LRN\): norm1's LRN has size 3"),
    (dict(pool5_pads=(1, 1, 1, 1)), r"node pool5 \(MaxPool\): pool5 maps 13x13 to 6x6 at 227"),
])
def test_a_graph_of_another_architecture_or_other_constants_is_refused_naming_the_node(tmp_path, change, message):
    path = save(bvlc_graph(bvlc_weights(), **change), tmp_path / "other.onnx")
    with pytest.raises(UserError, match=r"other.onnx: not bvlc_alexnet: .*" + message):
        convert_onnx(path, tmp_path / "other.pt", report=lambda line: None)
    assert not (tmp_path / "other.pt").exists()


def test_other_widths_that_break_the_architecture_are_refused_naming_the_layer(tmp_path):
    weights = bvlc_weights()
    weights["conv3"] = (np.zeros((24, 8, 3, 3), np.float32), weights["conv3"][1])  # conv3 sees one tower
    path = save(bvlc_graph(weights), tmp_path / "grouped.onnx")
    with pytest.raises(UserError, match=r"grouped.onnx: not bvlc_alexnet: conv3 weight is \[24, 8, 3, 3\], "
                                        r"expected \[24, 16, 3, 3\]"):
        convert_onnx(path, tmp_path / "grouped.pt", report=lambda line: None)


def test_a_truncated_an_empty_or_a_text_file_is_a_clear_error(tmp_path):
    data = bvlc_graph(bvlc_weights()).SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cut.onnx: not a readable ONNX file: truncated or damaged"):
        convert_onnx(tmp_path / "cut.onnx", tmp_path / "x.pt", report=lambda line: None)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(UserError, match=r"empty.onnx: not an ONNX file: the file is empty"):
        convert_onnx(tmp_path / "empty.onnx", tmp_path / "x.pt", report=lambda line: None)
    (tmp_path / "readme.onnx").write_text("see https://github.com/onnx/models\n")
    with pytest.raises(UserError, match=r"readme.onnx: not a readable ONNX file"):
        convert_onnx(tmp_path / "readme.onnx", tmp_path / "x.pt", report=lambda line: None)
    assert not (tmp_path / "x.pt").exists()


def test_weights_stored_outside_the_file_are_refused_not_followed(tmp_path):
    graph = bvlc_graph(bvlc_weights())
    fc6 = next(t for t in graph.graph.initializer if t.name == "fc6_w_0")
    fc6.ClearField("raw_data")
    fc6.data_location = TensorProto.EXTERNAL
    fc6.external_data.add(key="location", value="../../etc/passwd")
    path = save(graph, tmp_path / "external.onnx")
    with pytest.raises(UserError, match=r"fc6_w_0 is stored outside the file \(ONNX external data\)"):
        convert_onnx(path, tmp_path / "x.pt", report=lambda line: None)


def _initializer(graph, name):
    return next(t for t in graph.graph.initializer if t.name == name)


def _dims(first):
    return lambda tensor: tensor.dims.__setitem__(0, first)


@pytest.mark.parametrize(("damage", "message"), [
    (_dims(64), r"fc7_w_0 declares shape \[64, 32\] of FLOAT \(8,192 bytes\) but holds 4,096"),  # more
    (_dims(16), r"fc7_w_0 declares shape \[16, 32\] of FLOAT \(2,048 bytes\) but holds 4,096"),  # fewer
    (lambda t: t.ClearField("raw_data"), r"fc7_w_0 declares shape \[32, 32\] of FLOAT \(4,096 bytes\) but holds 0"),
    (_dims(-32), r"fc7_w_0 declares shape \[-32, 32\]"),
    (lambda t: setattr(t, "data_type", TensorProto.STRING), r"fc7_w_0 holds values of ONNX data type 8, not one"),
])
def test_a_tensor_whose_declared_shape_is_not_what_it_holds_is_named(tmp_path, capsys, damage, message):
    graph = bvlc_graph(bvlc_weights())
    damage(_initializer(graph, "fc7_w_0"))
    path = save(graph, tmp_path / "lies.onnx")
    ran = alexnet_command(capsys, "convert", "onnx", path, tmp_path / "x.pt")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr
    assert re.search(r"lies.onnx: " + message, ran.stderr), ran.stderr
    assert not (tmp_path / "x.pt").exists()


def test_a_constant_stored_outside_the_file_is_refused_unread_even_when_its_file_is_there(tmp_path, capsys,
                                                                                          monkeypatch):
    graph = bvlc_graph(bvlc_weights())  # the Reshape's shape as a Constant node, as newer exports have it
    shape = _initializer(graph, "OC2_DUMMY_1")
    graph.graph.initializer.remove(shape)
    value = onnx.TensorProto(data_type=TensorProto.INT64, dims=shape.dims, data_location=TensorProto.EXTERNAL)
    value.external_data.add(key="location", value="shape.bin")
    graph.graph.node.insert(0, helper.make_node("Constant", [], ["OC2_DUMMY_1"], value=value, name="shape"))
    path = save(graph, tmp_path / "outside.onnx")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shape.bin").write_bytes(numpy_helper.to_array(shape).tobytes())  # what loading would follow
    ran = alexnet_command(capsys, "convert", "onnx", path, tmp_path / "x.pt")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1
    assert ("outside.onnx: the tensor of node shape (Constant) is stored outside the file (ONNX external data)"
            in ran.stderr)
    assert not (tmp_path / "x.pt").exists()


KILLED_WHILE_WRITING = """
import os, signal, sys, torch
def save(obj, f, *args, **kwargs):  # half the file written, then killed as by the OOM killer
    f.write(b"half a model file")  # atomic_torch_save hands torch.save its open temporary
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save
from alexnet.cli import main
main(sys.argv[1:])
"""


def test_the_temporary_a_convert_killed_while_writing_left_is_removed_by_the_next(tmp_path, capsys):
    path = save(bvlc_graph(bvlc_weights()), tmp_path / "k.onnx")
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, "convert", "onnx", str(path),
                             str(tmp_path / "k.pt")], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    (left,) = tmp_path.glob(".k.pt.*.tmp")
    assert left.read_bytes() == b"half a model file" and not (tmp_path / "k.pt").exists()
    writing = tmp_path / f".k.pt.{os.getpid()}@{socket.gethostname()}.abcdefgh.tmp"  # a live writer's
    writing.write_bytes(b"being written")
    ran = alexnet_command(capsys, "convert", "onnx", path, tmp_path / "k.pt")
    assert ran.returncode == 0, ran.stderr
    assert list(tmp_path.glob(".*.tmp")) == [writing]
    assert load_model(tmp_path / "k.pt").arch == "alexnet"


@pytest.mark.parametrize(("shape", "message"), [
    ((3, 227, 227), r"the mean is 3x227x227; expected Caffe's 3x256x256 BGR mean image"),
    ((256, 256, 3), r"the mean is 256x256x3; expected"),
    ((4,), r"the mean is 4; expected"),
])
def test_a_mean_of_the_wrong_shape_is_a_clear_error(tmp_path, shape, message):
    np.save(tmp_path / "mean.npy", np.full(shape, 110, np.float32))
    path = save(bvlc_graph(bvlc_weights()), tmp_path / "m.onnx")
    with pytest.raises(UserError, match=r"mean.npy: " + message):
        convert_onnx(path, tmp_path / "m.pt", tmp_path / "mean.npy", report=lambda line: None)
    assert not (tmp_path / "m.pt").exists()


def test_a_pickled_mean_is_refused_unread(tmp_path):
    np.save(tmp_path / "mean.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    path = save(bvlc_graph(bvlc_weights()), tmp_path / "p.onnx")
    with pytest.raises(UserError, match=r"--mean .*mean.npy: not a plain numpy array"):
        convert_onnx(path, tmp_path / "p.pt", tmp_path / "mean.npy", report=lambda line: None)


def test_model_from_layers_takes_rgb_where_caffe_takes_bgr():
    weights = bvlc_weights(2)
    model = model_from_layers(weights, "x.caffemodel")
    w = model.features.conv1.weight.detach().numpy()
    np.testing.assert_array_equal(w, weights["conv1"][0][:, ::-1])


# --- the model options Caffe needs, against plain reference computations ------------------------


def test_lrn_across_towers_with_k_1_is_torchs_local_response_norm_over_all_maps():
    model = build_model("alexnet", lrn_scaling="code", lrn_k=1.0, lrn_across_towers=True, channels=[8, 16, 24, 24, 16],
                        fc_width=32, num_classes=10)
    norm = model.features.norm1
    x = torch.rand(2, 8, 9, 9, dtype=torch.float64) * 40
    reference = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)(x)
    torch.testing.assert_close(norm(x), reference)


def test_lrn_k_is_the_additive_constant_of_the_papers_formula_within_each_tower():
    x = torch.rand(1, 8, 3, 3, dtype=torch.float64) * 30
    norm = build_model("alexnet", lrn_k=3.0, channels=[8, 16, 24, 24, 16], fc_width=32).features.norm1
    expected = torch.empty_like(x)
    for tower in (0, 1):
        a = x[:, 4 * tower:4 * tower + 4]
        squares = F.pad(a * a, (0, 0, 0, 0, 2, 2)).unfold(1, 5, 1).sum(-1)  # plain window sum, clipped
        expected[:, 4 * tower:4 * tower + 4] = a / (3.0 + 1e-4 * squares) ** 0.75
    torch.testing.assert_close(norm(x), expected)


def test_the_papers_defaults_stay_and_model_files_without_the_new_options_load(tmp_path):
    from alexnet import load_model, save_model

    model = build_model("alexnet", channels=[8, 16, 24, 24, 16], fc_width=32, num_classes=10)
    norm = model.features.norm1
    assert (norm.k, norm.groups, norm.scaling) == (2.0, 2, "paper")
    save_model(model, tmp_path / "old.pt")
    record = torch.load(tmp_path / "old.pt", weights_only=True)
    for key in ("lrn_k", "lrn_across_towers"):  # a file written before these options existed
        del record["options"][key]
    torch.save(record, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.features.norm1.k == 2.0 and loaded.features.norm1.groups == 2


def test_save_bvlc_model_refuses_a_network_of_other_than_the_1000_classes(tmp_path):
    weights = bvlc_weights()
    weights["fc8"] = (weights["fc8"][0][:10], weights["fc8"][1][:10])
    model = model_from_layers(weights, "ten.caffemodel")
    with pytest.raises(UserError, match="ten.caffemodel: fc8 has 10 outputs, but bvlc_alexnet predicts the 1000"):
        save_bvlc_model(model, tmp_path / "ten.pt", None, "ten.caffemodel")


def test_the_verification_catches_a_model_that_normalises_within_each_tower(converted):
    from alexnet.convert_onnx import bvlc_layers, verify

    _, graph, _ = converted
    layers, io = bvlc_layers(graph, "zoo.onnx")
    model = model_from_layers(layers, "zoo.onnx")
    diff, bound = verify(graph, model, io)
    assert diff < bound < 1e-2
    model.features.norm1.groups = model.features.norm2.groups = 2  # the paper's towers, not Caffe's
    with pytest.raises(UserError, match=r"verification failed: the converted model's logits differ from "
                                        r"onnxruntime's by .* more than float32 tolerance"):
        verify(graph, model, io)


def test_without_the_onnx_package_the_error_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    path = save(bvlc_graph(bvlc_weights()), tmp_path / "z.onnx")
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # import onnx now fails
    ran = alexnet_command(capsys, "convert", "onnx", path, tmp_path / "z.pt")
    assert ran.returncode == 2
    assert "needs the onnx package: pip install 'alexnet[convert]'" in ran.stderr


def test_mean_is_refused_for_torchvisions_weights_which_normalise_otherwise(tmp_path, capsys):
    ran = alexnet_command(capsys, "convert", "torchvision", tmp_path / "w.pth", tmp_path / "w.pt", "--mean", "m.npy")
    assert ran.returncode == 2 and "--mean: torchvision's weights normalise with ImageNet's" in ran.stderr
