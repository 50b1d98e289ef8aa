"""Caffe's files read field by field: the protocol buffer wire format and the fields of Caffe's
``caffe.proto`` (BVLC/caffe master) that hold bvlc_alexnet's weights and its mean image::

    NetParameter     layer = 100 (LayerParameter), layers = 2 (V1LayerParameter, Caffe before 2015)
    LayerParameter   name = 1, type = 2 (string), blobs = 7, convolution_param = 106,
                     inner_product_param = 117, lrn_param = 118, pooling_param = 121
    V1LayerParameter name = 4, type = 5 (enum LayerType), blobs = 6, convolution_param = 10,
                     inner_product_param = 17, lrn_param = 18, pooling_param = 19
                     (its layer = 1 holds a V0 layer, Caffe before 2014: refused)
    BlobProto        shape = 7 (BlobShape: dim = 1, packed int64), data = 5 (packed float),
                     double_data = 8 (packed double), legacy num = 1, channels = 2, height = 3, width = 4

A ``.caffemodel`` is one NetParameter, a ``.binaryproto`` mean one BlobProto. Not ``google.protobuf``:
it would need hand-built descriptors, copy 61 million floats into Python objects and say only "Error
parsing message"; here every length is checked before it is read, floats are numpy views of the
file's bytes, and a damaged file gets a message saying what is wrong where.
"""

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alexnet.errors import UserError
from alexnet.modelfile import looks_like_text

MAX_FILE_BYTES = 1 << 30  # bvlc_alexnet.caffemodel is 233 MB; nothing of this network is near 1 GiB
# What a hostile file could make this reader hold: each bound is far above what Caffe writes.
MAX_LAYERS = 10_000  # bvlc_alexnet's train_val has 25
MAX_BLOBS = 16  # a weight and a bias
MAX_SETTINGS_BYTES = 1 << 16  # a layer's convolution_param, lrn_param ...; a blob's shape: tens of bytes
MAX_FIELDS = 1_000_000  # in one file: bvlc_alexnet.caffemodel has about a thousand (a packed blob is one)
VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5  # protobuf wire types (3 and 4, groups, are not used)


class WireError(ValueError):
    """The bytes are not the protocol buffer they should be; the message says where."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``pos``: at most 10 bytes."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    if pos + 10 > len(buf):
        raise WireError(f"a number at byte {pos:,} runs past the end of the data")
    raise WireError(f"a number at byte {pos:,} is longer than 10 bytes")


def _fixed32_run(buf: memoryview, pos: int, key: int) -> tuple[np.ndarray, int]:
    """An unpacked repeated float from ``pos`` (its first record whole, as :func:`fields` checks): consecutive
    (one-byte key, 4-byte float) records as one array (a Python loop over 61 million floats takes minutes)."""
    count, chunk = 0, 16
    while True:
        span = np.frombuffer(buf[pos + 5 * count: pos + 5 * (count + chunk)], np.uint8)
        records = span[: len(span) // 5 * 5].reshape(-1, 5)
        same = records[:, 0] == key
        if not same.all():
            count += int(np.argmin(same))
            break
        count += len(records)
        if len(records) < chunk:
            break
        chunk *= 2
    records = np.frombuffer(buf[pos: pos + 5 * count], np.uint8).reshape(-1, 5)
    return records[:, 1:].copy().view("<f4").ravel(), pos + 5 * count


def fields(buf: memoryview, budget: Iterator[int] | None = None, runs: tuple[int, ...] = ()):
    """``(field number, wire type, value)`` for each field of the message in ``buf``: an int, a memoryview or,
    for the fields in ``runs`` sent unpacked as fixed32 a float32 array of the run. ``budget`` counts the
    file's fields (an ``itertools.count`` shared by its messages) up to :data:`MAX_FIELDS`: millions of tiny
    fields would keep this pure-Python reader busy for minutes."""
    budget = budget or itertools.count()
    pos, end = 0, len(buf)
    while pos < end:
        if next(budget) >= MAX_FIELDS:
            raise WireError(f"more than {MAX_FIELDS:,} fields, where Caffe writes about a thousand")
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {start:,}")
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire == BYTES:
            size, pos = _varint(buf, pos)
            if size > end - pos:
                raise WireError(f"field {number} at byte {start:,} says it holds {size:,} bytes, "
                                f"but only {end - pos:,} follow")
            value, pos = buf[pos: pos + size], pos + size
        elif wire == FIXED32 and number in runs and key < 0x80 and pos + 4 < end and buf[pos + 4] == key:
            value, pos = _fixed32_run(buf, start, key)
        elif wire in (FIXED32, FIXED64):
            size = 4 if wire == FIXED32 else 8
            if size > end - pos:
                raise WireError(f"field {number} at byte {start:,} runs past the end of the data")
            value, pos = buf[pos: pos + size], pos + size
        else:
            raise WireError(f"wire type {wire} (field {number}) at byte {start:,}: not a protocol buffer "
                            f"Caffe writes")
        yield number, wire, value


def _packed(value, wire: int, dtype: str) -> np.ndarray:
    """A packed repeated float/double field as an array (or one unpacked value)."""
    if isinstance(value, np.ndarray):
        return value
    width = np.dtype(dtype).itemsize
    if wire == BYTES and len(value) % width:
        raise WireError(f"{len(value)} bytes of packed {np.dtype(dtype).name} are not a whole number of values")
    return np.frombuffer(value, dtype)


def _varints(value, wire: int) -> list[int]:
    """A repeated integer field, packed (one length-prefixed field) or one unpacked value."""
    if wire == VARINT:
        return [value]
    if wire != BYTES:
        raise WireError(f"an integer field with wire type {wire}")
    out, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        out.append(number)
    return out


def _signed(n: int) -> int:
    """An int64 field's value (negative numbers are sent as 10-byte two's complement)."""
    return n - (1 << 64) if n >= 1 << 63 else n


def read_blob(buf: memoryview, what: str, budget: Iterator[int] | None = None) -> np.ndarray:
    """A ``BlobProto`` as a float32 array of its shape (``shape``, else the legacy 4-d
    num/channels/height/width), its number of values checked against the shape."""
    # one view of the file's bytes when the data comes in one piece (Caffe writes it packed), else
    # gathered 4 bytes a value: memory stays within the file's size whatever the pieces
    first, gathered, dims, legacy = None, bytearray(), None, {}
    for number, wire, value in fields(buf, budget, runs=(5,)):
        piece = None
        if number == 5 and wire in (BYTES, FIXED32):
            piece = _packed(value, wire, "<f4")
        elif number == 8 and wire in (BYTES, FIXED64):
            piece = _packed(value, wire, "<f8").astype(np.float32)
        elif number == 7 and wire == BYTES:
            if len(value) > MAX_SETTINGS_BYTES:
                raise WireError(f"a blob shape of {len(value):,} bytes")
            dims = dims or []
            for n, w, v in fields(value, budget):
                if n == 1:
                    dims += [_signed(d) for d in _varints(v, w)]
        elif number in (1, 2, 3, 4) and wire == VARINT:
            legacy[number] = _signed(value)
        if piece is not None:
            if first is None and not gathered:
                first = piece
            else:
                gathered += (first.tobytes() if first is not None else b"") + piece.astype("<f4").tobytes()
                first = None
    if dims is None and legacy:
        dims = [legacy.get(n, 0) for n in (1, 2, 3, 4)]
    values = first if first is not None else np.frombuffer(gathered, "<f4")
    if dims is None:
        raise UserError(f"{what} has no shape (neither shape nor num/channels/height/width)")
    if any(d < 0 for d in dims):
        raise UserError(f"{what} has a negative dimension: {'x'.join(map(str, dims))}")
    if math.prod(dims) != values.size:
        raise UserError(f"{what} holds {values.size:,} numbers but its shape {'x'.join(map(str, dims))} "
                        f"needs {math.prod(dims):,}")
    return values.reshape(dims)


# V1LayerParameter's LayerType numbers, as names of today's LayerParameter.type.
V1_TYPES = {1: "Accuracy", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout", 8: "Flatten",
            9: "HDF5Data", 12: "ImageData", 14: "InnerProduct", 15: "LRN", 17: "Pooling", 18: "ReLU",
            19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH", 24: "WindowData",
            29: "MemoryData", 32: "DummyData", 36: "Silence"}
# the parameter message of each kind of layer: (LayerParameter field, V1LayerParameter field)
PARAM_FIELDS = {"Convolution": (106, 10), "InnerProduct": (117, 17), "LRN": (118, 18), "Pooling": (121, 19),
                "ReLU": (123, 30)}


@dataclass
class CaffeLayer:
    """One layer of a Caffe network: its name, type, parameter blobs and :func:`settings`."""
    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)
    settings: dict[int, list] = field(default_factory=dict)


def read_layer(buf: memoryview, v1: bool, index: int, budget: Iterator[int]) -> CaffeLayer:
    """A ``LayerParameter`` (or, with ``v1``, a ``V1LayerParameter``)."""
    name_field, type_field, blob_field = (4, 5, 6) if v1 else (1, 2, 7)
    name, kind, blobs, params = f"layer {index + 1}", None, [], {}
    for number, wire, value in fields(buf, budget):
        if number == name_field and wire == BYTES:
            name = bytes(value).decode("utf-8", "replace")
        elif number == type_field:
            kind = (V1_TYPES.get(value, f"V1 type {value}") if wire == VARINT else None) if v1 else (
                bytes(value).decode("utf-8", "replace") if wire == BYTES else None)
        elif number == blob_field and wire == BYTES:
            blobs.append(value)
            if len(blobs) > MAX_BLOBS:
                raise UserError(f"{name} has more than {MAX_BLOBS} blobs: not a layer Caffe writes")
        elif v1 and number == 1 and wire == BYTES:
            raise UserError("it was written by a Caffe older than 2014 (V0 layers); upgrade it with "
                            "Caffe's upgrade_net_proto_binary first")
        elif wire == BYTES:
            params[number] = value
    kind = kind or "?"
    param = params.get(PARAM_FIELDS.get(kind, (None, None))[1 if v1 else 0])
    return CaffeLayer(name, kind, [read_blob(b, f"{name}'s blob {i}", budget) for i, b in enumerate(blobs)],
                      settings(param, budget))


def read_net(buf: memoryview) -> list[CaffeLayer]:
    """The layers of a ``NetParameter``, in the file's order (new ``layer`` or legacy ``layers``)."""
    new, old, budget = [], [], itertools.count()
    for number, wire, value in fields(buf, budget):
        if number == 100 and wire == BYTES:
            new.append(value)
        elif number == 2 and wire == BYTES:
            old.append(value)
        if len(new) + len(old) > MAX_LAYERS:
            raise UserError(f"it holds more than {MAX_LAYERS:,} layers (bvlc_alexnet has 25)")
    if new and old:
        raise UserError("it holds layers in both Caffe formats (layer and the legacy layers)")
    layers = []
    for i, b in enumerate(new or old):
        try:
            layers.append(read_layer(b, bool(old), i, budget))
        except WireError as err:
            raise WireError(f"layer {i + 1} is damaged: {err}") from None
    return layers


def settings(param: memoryview | None, budget: Iterator[int] | None = None) -> dict[int, list]:
    """The fields of a settings message (``convolution_param``, ...): number -> values (ints, or
    floats for fixed32; a length-prefixed field as packed integers); None: no message."""
    found: dict[int, list] = {}
    if param is not None and len(param) > MAX_SETTINGS_BYTES:
        raise WireError(f"a layer's settings of {len(param):,} bytes")
    for number, wire, value in fields(param if param is not None else memoryview(b""), budget):
        if wire == FIXED32:
            found.setdefault(number, []).append(float(np.frombuffer(value, "<f4")[0]))
        elif wire in (VARINT, BYTES):
            try:
                numbers = _varints(value, wire)
            except WireError:  # not packed integers: a message or a string (weight_filler), which nothing reads
                continue
            found.setdefault(number, []).extend(numbers)
    return found


def read_bounded(path: str | Path, what: str, example: str = "bvlc_alexnet.caffemodel is about 233 MB") -> memoryview:
    """The bytes of ``path``, refused when missing, empty or over :data:`MAX_FILE_BYTES` (``example``
    says how large the real file is); the ONNX reader uses it too."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what}")
    size = path.stat().st_size
    article = "an" if what[0] in "AEIOUaeiou" else "a"
    if size == 0:
        raise UserError(f"{path}: not {article} {what}: the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path}: not {article} {what}: {size:,} bytes, more than the {MAX_FILE_BYTES:,} "
                        f"this reader accepts ({example})")
    return memoryview(path.read_bytes())


def _read(path, what: str, parse):
    """``parse`` of the bytes of ``path`` (:func:`read_bounded`), its errors naming the file."""
    buf = read_bounded(path, what)
    try:
        return parse(buf)
    except WireError as err:
        if looks_like_text(bytes(buf[:512])):
            raise UserError(f"{path}: not a {what}: it is a text file (a .prototxt network definition?); "
                            f"give the binary file with the weights") from None
        raise UserError(f"{path}: not a readable {what}: {err}; is it truncated (downloaded only in part) "
                        f"or another kind of file?") from None
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def read_caffemodel(path: str | Path) -> list[CaffeLayer]:
    """The layers of a ``.caffemodel`` file; errors name the file and what is wrong with it."""
    what = "Caffe model (.caffemodel)"
    layers = _read(path, what, read_net)
    if not layers:
        raise UserError(f"{path}: not a {what}: it holds no layers")
    return layers


def read_mean_binaryproto(path: str | Path) -> np.ndarray:
    """Caffe's mean image from a ``.binaryproto`` (imagenet_mean.binaryproto is 1x3x256x256):
    float32 ``[3, H, W]``, BGR as Caffe stores it, on the 0-255 scale."""
    mean = _read(path, "Caffe mean file (.binaryproto)", lambda buf: read_blob(buf, "the mean"))
    shape = mean.shape
    if len(shape) == 4 and shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 3 or mean.shape[0] != 3 or min(mean.shape) < 1:
        raise UserError(f"{path}: the mean is {'x'.join(map(str, shape))}, not a 3-channel image "
                        f"(1x3xHxW, BGR, as imagenet_mean.binaryproto's 1x3x256x256)")
    return np.ascontiguousarray(mean, dtype=np.float32)
