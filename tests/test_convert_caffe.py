"""`alexnet convert caffe`: Caffe's bvlc_alexnet.caffemodel and its mean .binaryproto, read field by
field (issue 13). The files here are written by a small protocol buffer writer with caffe.proto's
field numbers, for a reduced-width bvlc_alexnet (conv 8/16/24/24/16, fc 32/32/1000, 227x227
input); the converted model must compute what a plain PyTorch reading of the Caffe layer list
computes."""

import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet.convert_caffe import convert_caffe, protobuf, read_caffemodel, read_mean_binaryproto
from alexnet.errors import UserError
from alexnet.modelfile import read_model_file
from tests.kit import alexnet_command

CONVS = {"conv1": (8, 3, 11), "conv2": (16, 4, 5), "conv3": (24, 16, 3), "conv4": (24, 12, 3), "conv5": (16, 12, 3)}
FCS = {"fc6": (32, 16 * 6 * 6), "fc7": (32, 32), "fc8": (1000, 32)}
CONV_SETTINGS = {"conv1": (4, 0, 1), "conv2": (1, 2, 2), "conv3": (1, 1, 1), "conv4": (1, 1, 2), "conv5": (1, 1, 2)}


# --- a protocol buffer writer: caffe.proto's fields, as Caffe writes them ---------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def message(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def integer(number: int, n: int) -> bytes:
    return key(number, 0) + varint(n)


def real(number: int, x: float) -> bytes:
    return key(number, 5) + struct.pack("<f", x)


def blob(array: np.ndarray, legacy: bool = False, unpacked: bool = False) -> bytes:
    """A BlobProto: the new ``shape`` (packed int64 dims) or the legacy 4-d num/channels/height/width
    (leading 1s, as old Caffe stored fc weights 1x1xOUTxIN and biases 1x1x1xOUT); data packed or not."""
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        head = b"".join(integer(n, d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        head = message(7, message(1, b"".join(varint(d) for d in array.shape)))
    flat = array.astype("<f4").ravel()
    data = b"".join(real(5, float(v)) for v in flat) if unpacked else message(5, flat.tobytes())
    return head + data


V1_ENUM = {"Data": 5, "Convolution": 4, "ReLU": 18, "LRN": 15, "Pooling": 17, "InnerProduct": 14,
           "Dropout": 6, "SoftmaxWithLoss": 21}


def layer(name: str, kind: str, blobs=(), param: bytes = b"", v1: bool = False) -> bytes:
    """A LayerParameter (name 1, type 2, blobs 7, settings at 106/117/118/121) or a V1LayerParameter
    (name 4, type 5 enum, blobs 6, settings at 10/17/18/19)."""
    fields = protobuf.PARAM_FIELDS.get(kind)
    if v1:
        out = message(4, name.encode()) + integer(5, V1_ENUM[kind]) + b"".join(message(6, b) for b in blobs)
    else:
        out = message(1, name.encode()) + message(2, kind.encode()) + b"".join(message(7, b) for b in blobs)
    return out + (message(fields[1 if v1 else 0], param) if param and fields else b"")


# weight_filler { type: "gaussian" std: 0.01 } and bias_filler { type: "constant" value: -1 }, as
# train_val.prototxt's fillers are kept in a caffemodel (-1's last byte, 0xbf, ends no varint)
FILLERS = message(7, message(1, b"gaussian") + real(6, 0.01)) + message(8, message(1, b"constant") + real(2, -1.0))


def conv_param(name: str) -> bytes:
    stride, pad, group = CONV_SETTINGS[name]
    return (integer(1, CONVS[name][0]) + (integer(3, pad) if pad else b"") + integer(4, CONVS[name][2])
            + (integer(5, group) if group > 1 else b"") + (integer(6, stride) if stride > 1 else b"") + FILLERS)


LRN_PARAM = integer(1, 5) + real(2, 1e-4) + real(3, 0.75)  # k left to caffe.proto's default, 1
POOL_PARAM = integer(1, 0) + integer(2, 3) + integer(3, 2)


def random_weights(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    weights = {}
    # conv1's responses to 0-255 pixels reach the hundreds, where Caffe's LRN (k=1, alpha/n) divides
    # them by about 2: a wrong LRN constant or window shows in the logits; the layers after keep the scale
    for name, (out, inp, k) in CONVS.items():
        std = 0.1 if name == "conv1" else np.sqrt(2 / (inp * k * k))
        weights[name] = (rng.normal(0, std, (out, inp, k, k)), rng.normal(0, 0.5, out))
    for name, (out, inp) in FCS.items():
        weights[name] = (rng.normal(0, np.sqrt(2 / inp), (out, inp)), rng.normal(0, 0.5, out))
    return {n: (w.astype(np.float32), b.astype(np.float32)) for n, (w, b) in weights.items()}


def bvlc_layers(weights, v1=False, legacy=False, unpacked=(), caffenet=False):
    """bvlc_alexnet's train_val layer list (data and loss layers included), as (name, type, blobs, param)."""
    def weighted(name, kind, param=b""):
        w, b = weights[name]
        return (name, kind, [blob(w, legacy, name in unpacked), blob(b, legacy)], param)

    norm_pool = lambda i: [(f"norm{i}", "LRN", [], LRN_PARAM), (f"pool{i}", "Pooling", [], POOL_PARAM)]
    rows = [("data", "Data", [], b"")]
    for i in (1, 2):
        block = norm_pool(i)
        rows += [weighted(f"conv{i}", "Convolution", conv_param(f"conv{i}")), (f"relu{i}", "ReLU", [], b"")]
        rows += block[::-1] if caffenet else block
    for i in (3, 4, 5):
        rows += [weighted(f"conv{i}", "Convolution", conv_param(f"conv{i}")), (f"relu{i}", "ReLU", [], b"")]
    rows += [("pool5", "Pooling", [], POOL_PARAM)]
    for i in (6, 7):
        rows += [weighted(f"fc{i}", "InnerProduct", integer(1, FCS[f"fc{i}"][0])),
                 (f"relu{i}", "ReLU", [], b""), (f"drop{i}", "Dropout", [], real(1, 0.5))]
    rows += [weighted("fc8", "InnerProduct", integer(1, 1000)), ("loss", "SoftmaxWithLoss", [], b"")]
    return rows


def net_bytes(rows, v1=False) -> bytes:
    """A NetParameter: name 1, then the layers (layer = 100, or the legacy layers = 2)."""
    return message(1, b"AlexNet") + b"".join(
        message(2 if v1 else 100, layer(name, kind, blobs, param, v1)) for name, kind, blobs, param in rows)


def write_caffemodel(path, weights=None, v1=False, legacy=False, unpacked=(), caffenet=False, rows=None):
    weights = weights if weights is not None else random_weights()
    rows = rows if rows is not None else bvlc_layers(weights, v1, legacy, unpacked, caffenet)
    path.write_bytes(net_bytes(rows, v1))
    return path


def write_mean(path, mean: np.ndarray, legacy=True):
    path.write_bytes(blob(mean, legacy=legacy))
    return path


# --- the reference: Caffe's layer list read plainly with torch.nn.functional ------------------------


def caffe_forward(weights, bgr: torch.Tensor) -> torch.Tensor:
    """What Caffe computes for bvlc_alexnet on a BGR, mean-subtracted input: ReLU, then LRN across
    all maps (k=1, alpha/n: torch's LocalResponseNorm), then 3/2 max pooling rounded up."""
    t = {n: (torch.from_numpy(w), torch.from_numpy(b)) for n, (w, b) in weights.items()}
    lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    pool = lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = bgr
    for name, (stride, pad, group) in CONV_SETTINGS.items():
        x = F.relu(F.conv2d(x, *t[name], stride=stride, padding=pad, groups=group))
        if name in ("conv1", "conv2"):
            x = pool(lrn(x))
    x = pool(x).flatten(1)
    x = F.relu(F.linear(x, *t["fc6"]))
    x = F.relu(F.linear(x, *t["fc7"]))
    return F.linear(x, *t["fc8"])


def input_pair(seed=1):
    """The same image as Caffe gets it (BGR) and as our model gets it (RGB), mean-subtracted."""
    rng = np.random.default_rng(seed)
    rgb = torch.from_numpy(rng.uniform(-120, 130, (2, 3, 227, 227)).astype(np.float32))
    return rgb.flip(1), rgb


@pytest.mark.parametrize("form", ["layer", "legacy layers"])
def test_converted_model_computes_what_caffe_computes_on_the_same_image_in_rgb(tmp_path, form):
    weights = random_weights()
    v1 = form == "legacy layers"  # V1 layers, legacy 1x1xOUTxIN shapes, conv1 and fc7 sent unpacked
    path = write_caffemodel(tmp_path / "bvlc.caffemodel", weights, v1=v1, legacy=v1,
                            unpacked=("conv1", "fc7") if v1 else ())
    model = convert_caffe(path, tmp_path / "bvlc.pt")
    bgr, rgb = input_pair()
    with torch.no_grad():
        ours, reference = model.eval()(rgb), caffe_forward(weights, bgr)
    scale = reference.abs().max().item()
    assert scale > 1  # the network computes something: not all ReLUs dead
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4 * scale)
    from alexnet import load_model

    loaded = load_model(tmp_path / "bvlc.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(rgb), ours, rtol=0, atol=0)
    assert len(loaded.class_names) == 1000


def test_the_reader_gives_every_layer_in_order_with_its_blobs_in_caffe_shapes(tmp_path):
    weights = random_weights()
    layers = read_caffemodel(write_caffemodel(tmp_path / "m.caffemodel", weights, v1=True, legacy=True))
    assert [l.name for l in layers][:5] == ["data", "conv1", "relu1", "norm1", "pool1"]
    assert [l.type for l in layers][-2:] == ["InnerProduct", "SoftmaxWithLoss"]
    fc6 = next(l for l in layers if l.name == "fc6")
    assert [b.shape for b in fc6.blobs] == [(1, 1, 32, 576), (1, 1, 1, 32)]  # legacy 4-d, as stored
    assert np.array_equal(fc6.blobs[0][0, 0], weights["fc6"][0])


def test_mean_binaryproto_ends_up_in_the_model_file_as_rgb(tmp_path):
    rng = np.random.default_rng(2)
    bgr = np.stack([np.full((256, 256), 104.0), np.full((256, 256), 117.0),
                    rng.uniform(100, 140, (256, 256))]).astype(np.float32)
    mean = write_mean(tmp_path / "imagenet_mean.binaryproto", bgr[None])  # 1x3x256x256, legacy shape
    assert np.array_equal(read_mean_binaryproto(mean), bgr)
    convert_caffe(write_caffemodel(tmp_path / "m.caffemodel"), tmp_path / "m.pt", mean)
    stored = read_model_file(tmp_path / "m.pt")["mean"]
    assert tuple(stored.shape) == (256, 256, 3)
    assert np.array_equal(stored[..., 0].numpy(), bgr[2]) and np.all(stored[..., 2].numpy() == 104.0)


def test_mean_of_the_wrong_shape_is_refused_with_its_shape(tmp_path):
    one_channel = write_mean(tmp_path / "grey.binaryproto", np.zeros((1, 1, 256, 256), np.float32))
    with pytest.raises(UserError, match=r"grey.binaryproto: the mean is 1x1x256x256, not a 3-channel image"):
        read_mean_binaryproto(one_channel)
    small = write_mean(tmp_path / "small.binaryproto", np.zeros((1, 3, 100, 100), np.float32))
    with pytest.raises(UserError, match=r"small.binaryproto: the mean is 3x100x100; expected Caffe's 3x256x256"):
        convert_caffe(write_caffemodel(tmp_path / "m.caffemodel"), tmp_path / "m.pt", small)
    assert not (tmp_path / "m.pt").exists()


def test_a_blob_whose_data_does_not_fill_its_shape_is_named(tmp_path):
    short = blob(np.zeros((2, 3), np.float32))[:-4]  # one float fewer than 2x3
    short = short[: short.index(b"\x2a") + 1] + varint(5 * 4) + short[short.index(b"\x2a") + 2:]
    path = tmp_path / "mean.binaryproto"
    path.write_bytes(short)
    with pytest.raises(UserError, match=r"mean.binaryproto: the mean holds 5 numbers but its shape 2x3 needs 6"):
        read_mean_binaryproto(path)


def test_truncated_files_get_a_clear_error_wherever_they_are_cut(tmp_path):
    whole = write_caffemodel(tmp_path / "whole.caffemodel").read_bytes()
    cut = tmp_path / "cut.caffemodel"
    for end in [1, 2, 12, 100, len(whole) // 3, len(whole) // 2, len(whole) - 200, len(whole) - 1]:
        cut.write_bytes(whole[:end])
        with pytest.raises(UserError) as err:
            convert_caffe(cut, tmp_path / "out.pt")
        message = str(err.value)
        assert message.startswith(f"{cut}: ") and "\n" not in message, message
        assert any(word in message for word in ("truncated", "runs past the end", "no weights for",
                                                "network ends")), message
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=r"says it holds [\d,]+ bytes, but only [\d,]+ follow; is it truncated"):
        read_caffemodel(cut)
    assert not (tmp_path / "out.pt").exists()


def test_files_that_are_not_caffemodels_are_named_for_what_they_are(tmp_path):
    text = tmp_path / "deploy.prototxt"
    text.write_text('name: "AlexNet"\nlayer {\n  name: "data"\n  type: "Input"\n}\n')
    with pytest.raises(UserError, match=r"deploy.prototxt: not a Caffe model \(.caffemodel\): it is a text file"):
        read_caffemodel(text)
    jpeg = tmp_path / "photo.caffemodel"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4)
    with pytest.raises(UserError, match=r"photo.caffemodel: not a readable Caffe model"):
        read_caffemodel(jpeg)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="the file is empty"):
        read_caffemodel(empty)
    with pytest.raises(UserError, match="no such Caffe model"):
        read_caffemodel(tmp_path / "absent.caffemodel")


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = write_caffemodel(tmp_path / "m.caffemodel")
    monkeypatch.setattr(protobuf, "MAX_FILE_BYTES", 1000)
    with pytest.raises(UserError, match=r"m.caffemodel: not a Caffe model \(.caffemodel\): [\d,]+ bytes, more than"):
        read_caffemodel(path)


def replace_row(rows, name, row):
    return [row if r[0] == name else r for r in rows]


def refused(tmp_path, rows) -> str:
    path = tmp_path / "other.caffemodel"
    path.write_bytes(net_bytes(rows))
    with pytest.raises(UserError) as err:
        convert_caffe(path, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    message = str(err.value)
    assert message.startswith(f"{path}: not bvlc_alexnet: ") and "\n" not in message
    return message[len(f"{path}: not bvlc_alexnet: "):]


def test_another_architecture_is_refused_naming_the_layer_that_differs(tmp_path):
    weights = random_weights()
    rows = bvlc_layers(weights)
    conv6 = ("conv6", "Convolution", [blob(np.zeros((16, 16, 3, 3), np.float32)), blob(np.zeros(16, np.float32))],
             integer(3, 1))
    at = [r[0] for r in rows].index("pool5")
    assert refused(tmp_path, rows[:at] + [conv6] + rows[at:]) == (
        "layer conv6 (Convolution) stands where bvlc_alexnet has pool5 (Pooling)")
    assert refused(tmp_path, [r for r in rows if r[0] != "fc8"]) == (
        "the network ends after 19 layers, before its fc8 (InnerProduct)")
    at = [r[0] for r in rows].index("relu6")
    assert refused(tmp_path, rows[:at] + [("tanh6", "TanH", [], b"")] + rows[at:]) == (
        "layer tanh6 (TanH) is of a kind bvlc_alexnet has not")
    renamed = replace_row(rows, "fc8", ("fc8_flickr",) + rows[-2][1:])
    assert refused(tmp_path, renamed) == "layer fc8_flickr (InnerProduct) stands where bvlc_alexnet has fc8 (InnerProduct)"


def test_caffenet_which_pools_before_it_normalises_is_not_taken_for_bvlc_alexnet(tmp_path):
    message = refused(tmp_path, bvlc_layers(random_weights(), caffenet=True))
    assert message == ("layer pool1 (Pooling) stands where bvlc_alexnet has norm1 (LRN) (pooling before "
                       "normalisation: CaffeNet's order, bvlc_reference_caffenet)")


def test_other_layer_settings_are_refused_with_the_setting(tmp_path):
    rows = bvlc_layers(random_weights())
    other_lrn = replace_row(rows, "norm2", ("norm2", "LRN", [], integer(1, 5) + real(2, 1e-3) + real(3, 0.75)))
    assert refused(tmp_path, other_lrn) == "norm2 (LRN) has alpha 0.001 instead of 0.0001"
    k2 = replace_row(rows, "norm1", ("norm1", "LRN", [], LRN_PARAM + real(5, 2.0)))
    assert refused(tmp_path, k2) == "norm1 (LRN) has k 2 instead of 1"
    conv = next(r for r in rows if r[0] == "conv4")
    one_group = replace_row(rows, "conv4", conv[:3] + (integer(3, 1) + integer(4, 3),))
    assert refused(tmp_path, one_group) == "conv4 (Convolution) has group 1 instead of 2"
    average = replace_row(rows, "pool5", ("pool5", "Pooling", [], integer(1, 1) + integer(2, 3) + integer(3, 2)))
    assert refused(tmp_path, average) == "pool5 (Pooling) has pool 1 instead of 0"
    leaky = replace_row(rows, "relu6", ("relu6", "ReLU", [], real(1, 0.1)))
    assert refused(tmp_path, leaky) == "relu6 (ReLU) has negative_slope 0.1"


def test_weights_of_other_shapes_are_refused_with_the_shapes(tmp_path):
    weights = random_weights()
    weights["conv2"] = (np.zeros((16, 8, 5, 5), np.float32), weights["conv2"][1])  # conv2 seeing both towers
    assert refused(tmp_path, bvlc_layers(weights)) == "conv2 weight is [16, 8, 5, 5], expected [16, 4, 5, 5]"
    rows = bvlc_layers(random_weights())
    fc7 = next(r for r in rows if r[0] == "fc7")
    assert refused(tmp_path, replace_row(rows, "fc7", fc7[:2] + (fc7[2][:1], b""))) == (
        "fc7 has 1 blobs, not a weight and a bias")


def test_convert_caffe_command_writes_a_model_file_that_predict_takes(tmp_path, capsys):
    mean = write_mean(tmp_path / "mean.binaryproto", np.full((1, 3, 256, 256), 110.0, np.float32))
    model = write_caffemodel(tmp_path / "bvlc_alexnet.caffemodel")
    ran = alexnet_command(capsys, "convert", "caffe", model, tmp_path / "bvlc.pt", "--mean", mean)
    assert ran.returncode == 0, ran.stderr
    assert "wrote" in ran.stdout and "1000 ILSVRC-2012 classes" in ran.stdout
    record = read_model_file(tmp_path / "bvlc.pt")
    assert record["converted"]["file"] == "bvlc_alexnet.caffemodel" and len(record["converted"]["sha256"]) == 64
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 280, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    ran = alexnet_command(capsys, "predict", tmp_path / "bvlc.pt", tmp_path / "x.png", "--device", "cpu")
    assert ran.returncode == 0, ran.stderr


def test_convert_caffe_command_reports_a_bad_file_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.caffemodel").write_bytes(b"\x0a\x07AlexNet\xa2\x06\xff\xff\x03")
    ran = alexnet_command(capsys, "convert", "caffe", tmp_path / "bad.caffemodel", tmp_path / "out.pt")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr
    assert "bad.caffemodel: not a readable Caffe model" in ran.stderr and "truncated" in ran.stderr
    assert not (tmp_path / "out.pt").exists()


def test_mean_as_npy_is_read_without_pickle(tmp_path):
    from alexnet.convert_caffe import read_mean

    np.save(tmp_path / "mean.npy", np.full((3, 256, 256), 100.0, np.float32))
    assert read_mean(tmp_path / "mean.npy").shape == (3, 256, 256)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="objects.npy: not a plain numpy array"):
        read_mean(tmp_path / "objects.npy")


def test_a_file_of_countless_tiny_fields_is_refused_quickly(tmp_path, monkeypatch):
    monkeypatch.setattr(protobuf, "MAX_FIELDS", 10_000)
    path = tmp_path / "tiny.caffemodel"
    path.write_bytes(integer(5, 1) * 20_000)  # NetParameter.force_backward, twenty thousand times
    with pytest.raises(UserError, match=r"tiny.caffemodel: not a readable Caffe model \(.caffemodel\): "
                                        r"more than 10,000 fields"):
        read_caffemodel(path)
    many = b"".join(message(100, message(1, b"x")) for _ in range(protobuf.MAX_LAYERS + 1))
    path.write_bytes(many)
    monkeypatch.setattr(protobuf, "MAX_FIELDS", 1_000_000)
    with pytest.raises(UserError, match=r"tiny.caffemodel: it holds more than 10,000 layers"):
        read_caffemodel(path)


def test_figure3_of_a_converted_file_draws_two_towers_and_compares_their_colour(tmp_path, capsys):
    """conv1's towers come from conv2's two groups, though Caffe's LRN normalises across them; a grey
    tower 1 and a single-channel (colour) tower 2 written in BGR come out as such in RGB."""
    import json

    weights = random_weights()
    rng = np.random.default_rng(3)
    conv1 = np.repeat(rng.normal(0, 0.1, (8, 1, 11, 11)), 3, axis=1)  # grey: B = G = R
    for i in range(4, 8):
        conv1[i, [c for c in range(3) if c != i % 3]] = 0  # tower 2: one colour channel each
    weights["conv1"] = (conv1.astype(np.float32), weights["conv1"][1])
    convert_caffe(write_caffemodel(tmp_path / "bvlc.caffemodel", weights), tmp_path / "bvlc.pt")
    ran = alexnet_command(capsys, "figures", tmp_path / "bvlc.pt", "--out", tmp_path / "figures")
    assert ran.returncode == 0, ran.stderr
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"kernels.png", "colour.json"}
    colour = json.loads((tmp_path / "figures" / "colour.json").read_text())
    assert [t["kernels"] for t in colour["towers"]] == [[0, 3], [4, 7]]
    assert colour["towers"][0]["mean_specificity"] < 1e-6
    assert colour["towers"][1]["mean_specificity"] == pytest.approx(2 / 3)
    assert colour["comparison"]["more_colour_specific"] == 2
    assert "tower 1 0.00, tower 2 0.67 (a random kernel 0.67): tower 2 more colour-specific" in ran.stdout
