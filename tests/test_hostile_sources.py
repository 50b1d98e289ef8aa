"""`alexnet prepare` on sources that are broken or hostile: pickles that run code, FIFOs, link loops,
OUT inside SOURCE, tar member names that climb out, images that cost gigabytes, absurd sizes, a full disk."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import main
from alexnet.data import prepare_shards
from alexnet.data.dataset import PreparedDataset
from alexnet.data.images import BadImage
from alexnet.data.prepare import prepare
from alexnet.data.sources import read_item
from alexnet.errors import UserError
from tests import kit

ROOT = Path(__file__).resolve().parents[1]


def _skipped(out: Path, split: str = "train") -> dict[str, str]:
    """File name -> reason of the files the prepared dataset lists as skipped."""
    meta = json.loads((out / "meta.json").read_text())
    return {Path(s["path"]).name: s["reason"] for s in meta["splits"][split]["skipped"]}


def _error_line(capsys) -> str:
    """The last line on standard error, which must be the command's one-line error."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("alexnet prepare: error: "), lines
    return lines[-1]


# ---------------------------------------------------------------- CIFAR-10's pickles


class _WritesMarker:
    """An object whose pickle makes the unpickler call open(marker, "w"): code run from a data file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _cifar_folder(root: Path, protocol: int = pickle.DEFAULT_PROTOCOL, per_batch: int = 2,
                  label_names=kit.CIFAR_NAMES, file_name: str = "img_{b}_{i}.png") -> Path:
    """cifar-10-batches-py/ with the real files' structure, pickled with ``protocol``; ``file_name``:
    image ``i`` of batch ``b``'s name."""
    folder = root / "cifar-10-batches-py"
    kit.write(folder / "batches.meta",
              pickle.dumps({b"label_names": [n.encode() for n in label_names], b"num_vis": 3072}, protocol))
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batch = {b"batch_label": f"batch {b}".encode(),
                 b"data": kit.cifar_pixels(b, per_batch).transpose(0, 3, 1, 2).reshape(per_batch, -1),
                 b"labels": [(b + i) % 10 for i in range(per_batch)],
                 b"filenames": [file_name.format(b=b, i=i).encode() for i in range(per_batch)]}
        data = pickle.dumps(batch, protocol)
        if protocol <= 3:  # the real files (numpy 1, protocol 2) name numpy.core, not numpy._core
            data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        kit.write(folder / name, data)
    return folder


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_genuine_cifar_batches_still_prepare(tmp_path, protocol):
    folder = _cifar_folder(tmp_path / "src", protocol)
    out = kit.run_prepare(folder, tmp_path / "out", size=32, encoding="raw")
    train = PreparedDataset(out, "train")
    expected = np.concatenate([kit.cifar_pixels(b, 2) for b in range(5)])
    assert len(train) == 10 and all(np.array_equal(train[i][0], expected[i]) for i in range(10))
    assert train.labels.tolist() == [(b + i) % 10 for b in range(5) for i in range(2)]


def test_cifar_classes_and_file_names_that_clash_once_made_harmless_stay_distinct(tmp_path):
    import webdataset as wds

    names = [".", "", *kit.CIFAR_NAMES[2:]]  # both would be class _
    folder = _cifar_folder(tmp_path / "src", label_names=names, file_name="same.png")  # every image: one name
    out = kit.run_prepare(folder, tmp_path / "out", size=32, encoding="raw")
    meta = json.loads((out / "meta.json").read_text())
    assert [c["id"] for c in meta["classes"]] == ["_", "_-2", *kit.CIFAR_NAMES[2:]]
    for split, count in (("train", 10), ("val", 2)):
        samples = list(wds.WebDataset([str(out / s) for s in meta["splits"][split]["shards"]], shardshuffle=False))
        assert [s["__key__"] for s in samples] == ["same"] + [f"same-{n}" for n in range(2, count + 1)]
        assert [s["npy"] for s in samples] == [PreparedDataset(out, split).read(i)[0] for i in range(count)]


@pytest.mark.parametrize("name", ["batches.meta", "data_batch_3"])
def test_a_cifar_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, capsys, name):
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_WritesMarker(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()  # plain pickle.load would run it
    folder = _cifar_folder(tmp_path / "src")
    hostile = {b"data": _WritesMarker(marker), b"labels": [0], b"label_names": _WritesMarker(marker)}
    kit.write(folder / name, pickle.dumps(hostile))
    assert main(["prepare", str(folder), str(tmp_path / "out"), "--size", "32", "--workers", "1"]) == 2
    line = _error_line(capsys)
    assert f"{folder / name}: refused, not a CIFAR-10 pickle: it calls io.open" in line
    assert not marker.exists()


class _HugeArray:
    """An object whose pickle asks numpy for a 1 TiB array."""

    def __reduce__(self):
        return (np.zeros(1).__reduce__()[0], (np.ndarray, (2**40,), b"b"))


def test_a_cifar_pickle_cannot_make_numpy_allocate_what_it_does_not_hold(tmp_path):
    folder = _cifar_folder(tmp_path / "src")
    kit.write(folder / "data_batch_1", pickle.dumps({b"data": _HugeArray(), b"labels": [0]}))
    with pytest.raises(UserError, match=r"data_batch_1: refused, .* builds an array .* of shape \(1099511627776,\)"):
        kit.run_prepare(folder, tmp_path / "out", size=32)


def test_a_cifar_batch_without_the_formats_arrays_is_refused(tmp_path):
    folder = _cifar_folder(tmp_path / "src")
    kit.write(folder / "test_batch", pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}))
    with pytest.raises(UserError, match=r"test_batch: not a CIFAR-10 batch \(no uint8 data"):
        kit.run_prepare(folder, tmp_path / "out", size=32)
    kit.write(folder / "test_batch", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))
    with pytest.raises(UserError, match=r"test_batch: not a CIFAR-10 batch \(labels are not 2 class numbers"):
        kit.run_prepare(folder, tmp_path / "out", size=32)


# ---------------------------------------------------------------- hostile file systems


def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    source = kit.image_folder(tmp_path / "src", per_class=1, val_per_class=0)
    os.mkfifo(source / "train" / kit.WNIDS[0] / "fifo.JPEG")
    command = [sys.executable, "-m", "alexnet", "prepare", str(source), str(tmp_path / "out"),
               "--size", str(kit.SOLID_SIZE), "--workers", "1"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        _, err = process.communicate(timeout=kit.HANG_GUARD_S)  # a hang detector only: the run takes seconds
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("alexnet prepare hangs on a FIFO")
    assert process.returncode == 0, err.decode()
    assert _skipped(tmp_path / "out") == {"fifo.JPEG": "not a regular file (a FIFO)"}
    assert len(PreparedDataset(tmp_path / "out", "train")) == 3


def test_a_link_loop_or_a_second_link_to_a_folder_gives_exactly_the_real_images(tmp_path):
    train = tmp_path / "src" / "train"
    kit.write(train / "a" / "a0.JPEG", kit.jpeg(0))
    kit.write(train / "a" / "a1.JPEG", kit.jpeg(0))
    kit.write(train / "b" / "b0.JPEG", kit.jpeg(1))
    (train / "a" / "loop").symlink_to("..")  # back up to train/: every class again, under class a
    (train / "b" / "twin").symlink_to("../a")  # class a's folder again, under class b
    out = kit.run_prepare(tmp_path / "src", tmp_path / "out")
    ds = PreparedDataset(out, "train")
    assert len(ds) == 3 and ds.labels.tolist() == [0, 0, 1]
    assert [kit.solid_class(ds[i][0]) for i in range(3)] == [0, 0, 1]
    skipped = _skipped(out)
    assert skipped.keys() == {"loop", "twin"}
    assert skipped["loop"] == f"a link to {train}, a folder read already"
    assert skipped["twin"] == f"a link to {train / 'a'}, a folder read already"


@pytest.mark.parametrize("where", ["train/n01440764/out", "train", "."])
def test_out_inside_source_is_refused(tmp_path, capsys, where):
    source = kit.image_folder(tmp_path / "src", per_class=1, val_per_class=0)
    before = sorted(source.rglob("*"))
    out = source / where
    assert main(["prepare", str(source), str(out), "--size", str(kit.SOLID_SIZE)]) == 2
    assert f"OUT {out} is inside SOURCE {source}" in _error_line(capsys)
    assert sorted(source.rglob("*")) == before  # nothing written into the source


def test_ilsvrc_tar_member_names_cannot_climb_out_of_a_shard(tmp_path):
    root = kit.ilsvrc_tars(tmp_path / "src", per_class=1, n_val=2)
    inner = kit._tar_bytes({"../../evil.JPEG": kit.jpeg(0), "sub/..": kit.jpeg(0), "./fine.JPEG": kit.jpeg(0)})
    kit.write(root / "ILSVRC2012_img_train.tar", kit._tar_bytes({
        f"{kit.WNIDS[0]}.tar": inner, "...tar": inner, "up/../..tar": inner, "back\\slash.tar": inner}))
    out = kit.run_prepare(root, tmp_path / "out")
    ids = [c["id"] for c in json.loads((out / "meta.json").read_text())["classes"]]
    assert sorted(ids) == ["_", "__", "back_slash", kit.WNIDS[0]]
    names = []
    for shard in sorted((out / "train").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            names += tar.getnames()
    assert len(names) == 2 * 3 * 4
    dest = tmp_path / "extracted"
    for name in names:
        assert "\\" not in name and not name.startswith("/") and ".." not in name.split("/"), name
        assert dest in Path(os.path.normpath(dest / name)).parents, name  # extracting it stays inside
    assert f"{kit.WNIDS[0]}/fine.jpg" in names


def test_two_ilsvrc_members_that_make_one_class_are_an_error(tmp_path):
    root = kit.ilsvrc_tars(tmp_path / "src", per_class=1, n_val=2)
    inner = kit._tar_bytes({"x.JPEG": kit.jpeg(0)})
    kit.write(root / "ILSVRC2012_img_train.tar", kit._tar_bytes({"a/...tar": inner, "b/...tar": inner}))
    with pytest.raises(UserError, match=r"two members make the class __ \(the second: b/...tar\)"):
        kit.run_prepare(root, tmp_path / "out")


GROUND_TRUTH, META_MAT = "data/ILSVRC2012_validation_ground_truth.txt", "data/meta.mat"
DEVKIT_FAULTS = {  # what a devkit file holds -> the error after "<devkit>: <file>"
    "garbage meta.mat": (META_MAT, b"garbage" * 40, "not the devkit's meta.mat ("),
    "empty meta.mat": (META_MAT, b"", "not the devkit's meta.mat ("),
    "a label that is no number": (GROUND_TRUTH, b"2\nx2\n", "the label of ILSVRC2012_val_00000002 is 'x2', not "
                                  "one of the 3 ILSVRC2012_IDs of data/meta.mat"),
    "an unknown ID": (GROUND_TRUTH, b"2\n1001\n", "the label of ILSVRC2012_val_00000002 is '1001', not one of "
                      "the 3 ILSVRC2012_IDs of data/meta.mat"),  # 1001: meta.mat's synset that is no leaf
}


@pytest.mark.parametrize("layout, devkit", [("ilsvrc_tars", "ILSVRC2012_devkit_t12.tar.gz"),
                                            ("ilsvrc_extracted", "ILSVRC2012_devkit_t12")])
@pytest.mark.parametrize("fault", DEVKIT_FAULTS)
def test_a_damaged_devkit_is_one_line_naming_the_file_and_what_is_wrong(tmp_path, capsys, layout, devkit, fault):
    root = getattr(kit, layout)(tmp_path / "src", per_class=1, n_val=2)
    name, data, said = DEVKIT_FAULTS[fault]
    files = {**kit.devkit_files(2), f"ILSVRC2012_devkit_t12/{name}": data}
    if layout == "ilsvrc_tars":
        kit.write(root / devkit, kit._tar_bytes(files, mode="w:gz"))
    else:
        kit.write(root / "ILSVRC2012_devkit_t12" / name, data)
    assert main(["prepare", str(root), str(tmp_path / "out"), "--size", str(kit.SOLID_SIZE)]) == 2
    assert _error_line(capsys).startswith(f"alexnet prepare: error: {root / devkit}: {name}: {said}")


def _prepare_traced(source: Path, out: Path) -> tuple[int, int]:
    """`alexnet prepare SOURCE OUT`'s exit status and the peak of the memory Python allocated meanwhile."""
    import tracemalloc

    tracemalloc.start()
    try:
        status = main(["prepare", str(source), str(out), "--size", str(kit.SOLID_SIZE)])
        return status, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_devkit_archive_member_over_the_bound_is_refused_without_being_read(tmp_path, capsys):
    from alexnet.data.ilsvrc import DEVKIT_MAX_BYTES

    root = kit.ilsvrc_tars(tmp_path / "src", per_class=1, n_val=2)
    files = {**kit.devkit_files(2), f"ILSVRC2012_devkit_t12/{GROUND_TRUTH}": bytes(DEVKIT_MAX_BYTES + 1)}
    kit.write(root / "ILSVRC2012_devkit_t12.tar.gz", kit._tar_bytes(files, mode="w:gz"))  # 64 kB compressed
    del files
    status, peak = _prepare_traced(root, tmp_path / "out")
    assert status == 2 and peak < DEVKIT_MAX_BYTES // 4
    assert _error_line(capsys) == (
        f"alexnet prepare: error: SOURCE {root / 'ILSVRC2012_devkit_t12.tar.gz'}: {GROUND_TRUTH} is too large: "
        f"{DEVKIT_MAX_BYTES + 1} bytes, above the limit of {DEVKIT_MAX_BYTES}; not read")


def _huge_meta_mat(how: str) -> bytes:
    data = bytearray(kit.meta_mat())
    if how == "declares 10^8 synsets":
        at = data.find(struct.pack("<II", 5, 8), 128)  # the dims of the synsets: 1 x 4
        data[at + 8:at + 16] = struct.pack("<ii", 10**8, 1)
        return bytes(data)
    deflated = zlib.compress(bytes(2**26 + 1))  # a variable of 64 MiB + 1 in 65 kB
    return bytes(data[:128]) + struct.pack("<II", 15, len(deflated)) + deflated


@pytest.mark.parametrize("how, said", [
    ("declares 10^8 synsets", "its arrays declare 100000104 elements, above the limit of 16777216"),
    ("inflates past the bound", "its variables inflate past 67108864 bytes")])
def test_a_meta_mat_that_would_cost_gigabytes_is_refused_before_it_is_read(tmp_path, capsys, how, said):
    root = kit.ilsvrc_extracted(tmp_path / "src", per_class=1, n_val=2)
    kit.write(root / "ILSVRC2012_devkit_t12" / META_MAT, _huge_meta_mat(how))
    status, peak = _prepare_traced(root, tmp_path / "out")
    assert status == 2 and peak < 3 * 2**26  # the inflated bytes at most; scipy would build 3.2 GB for the first
    assert _error_line(capsys) == (f"alexnet prepare: error: {root / 'ILSVRC2012_devkit_t12'}: {META_MAT}: not the "
                                   f"devkit's meta.mat ({said}); not read")


def test_a_kaggle_solution_file_without_its_columns_is_one_line_naming_it(tmp_path, capsys):
    root = kit.kaggle(tmp_path / "src", per_class=1, n_val=2)
    kit.write(root / "LOC_val_solution.csv", b"ImageId,Boxes\nILSVRC2012_val_00000001,n01440764 1 2 3 4\n")
    assert main(["prepare", str(root), str(tmp_path / "out"), "--size", str(kit.SOLID_SIZE)]) == 2
    assert _error_line(capsys) == (f"alexnet prepare: error: SOURCE {root / 'LOC_val_solution.csv'}: line 2 is not "
                                   "ImageId,PredictionString with a wnid first")


# ---------------------------------------------------------------- memory


def _png_claiming(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG of a few bytes whose header claims ``width`` x ``height`` pixels."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((1, 1), np.uint16)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR: after the signature, length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_an_image_whose_header_claims_too_many_pixels_is_skipped_undecoded(tmp_path):
    kit.write(tmp_path / "src" / "train" / "a" / "good.JPEG", kit.jpeg(0))
    kit.write(tmp_path / "src" / "train" / "a" / "bomb.JPEG", _png_claiming(9000, 9000))  # 162 MB decoded
    out = prepare(tmp_path / "src", tmp_path / "out", size=kit.SOLID_SIZE, workers=1, progress=False)
    assert _skipped(out) == {"bomb.JPEG": "too large: 9000x9000 pixels above the pixel budget of 33554432 "
                                          "(--max-pixels)"}
    assert len(PreparedDataset(out, "train")) == 1


def test_max_pixels_counts_after_reduced_scale_jpeg_decoding_and_bounds_the_bytes_read(tmp_path, capsys):
    train = tmp_path / "src" / "train"
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (5, 6, 7)).save(buffer, "PNG")
    kit.write(train / "a" / "wide.png", buffer.getvalue())  # 60,000 pixels, no reduced-scale decoding
    kit.write(train / "a" / "big.JPEG", kit.jpeg(0, (800, 800)))  # 640,000 pixels, 10,000 at 1/8 scale
    kit.write(train / "b" / "padded.JPEG", kit.jpeg(1, (40, 40)) + bytes(90_000))  # 90 KB for 1,600 pixels
    kit.write(train / "b" / "small.JPEG", kit.jpeg(1))
    out = tmp_path / "out"
    assert main(["prepare", str(tmp_path / "src"), str(out), "--size", str(kit.SOLID_SIZE), "--max-pixels", "20000"]) == 0
    skipped = _skipped(out)
    assert skipped.keys() == {"wide.png", "padded.JPEG"}
    assert skipped["wide.png"] == "too large: 300x200 pixels above the pixel budget of 20000 (--max-pixels)"
    assert skipped["padded.JPEG"].startswith("too large: ") and "above the limit of 80000" in skipped["padded.JPEG"]
    said = capsys.readouterr()
    assert f"skipped {train / 'a' / 'wide.png'}: too large" in said.out + said.err
    ds = PreparedDataset(out, "train")
    assert ds.labels.tolist() == [0, 1] and [kit.solid_class(ds[i][0]) for i in range(2)] == [0, 1]


_DECODE = """
import sys
from alexnet.data.images import centre_patch, open_image

def status(field):  # this process image's own figures, in kB (getrusage's would include pytest's before exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

data = open(sys.argv[1], "rb").read()
before = status("VmRSS")
centre_patch(open_image(data), 256, max_pixels=2**24)
print((status("VmHWM") - before) * 1024)  # the peak since, over what was resident before
"""


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F"])
def test_a_decode_at_the_budget_costs_at_most_13_bytes_a_pixel(tmp_path, mode):
    side = 4096  # 2**24 pixels: the budget given above
    if mode in ("I;16", "I", "F"):
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        image = Image.fromarray(np.full((side, side), 300, dtype))
    else:
        image = Image.new(mode, (side, side))
    path = tmp_path / "image"
    image.save(path, "TIFF" if mode in ("CMYK", "I", "F") else "PNG")
    result = subprocess.run([sys.executable, "-c", _DECODE, str(path)], cwd=ROOT, capture_output=True, text=True,
                            check=True)  # a fresh process: its peak memory is this decode's
    assert int(result.stdout) <= 13 * side**2, mode


def test_a_tar_member_larger_than_the_limit_is_not_read(tmp_path):
    tar = kit.write(tmp_path / "x.tar", b"\0" * 1024)
    with pytest.raises(BadImage, match="too large: 1099511627776 bytes, above the limit of 1000"):
        read_item(("tar", str(tar), 0, 2**40), 1000)  # a pread of that size would allocate 1 TiB


@pytest.mark.parametrize("size", ["100000", "4", "0"])
def test_an_absurd_size_is_one_line_naming_the_allowed_range(tmp_path, capsys, size):
    source = kit.image_folder(tmp_path / "src", per_class=1, val_per_class=0)
    assert main(["prepare", str(source), str(tmp_path / "out"), "--size", size]) == 2
    assert f"--size {size}: expected 8 to 1024 pixels" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_full_disk_names_the_file_and_the_space_it_needed(tmp_path, capsys, monkeypatch):
    def full(path, records, extension):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_shards, "write_shard", full)
    source = kit.image_folder(tmp_path / "src", per_class=1, val_per_class=0)
    out = tmp_path / "out"
    assert main(["prepare", str(source), str(out), "--size", str(kit.SOLID_SIZE), "--workers", "1"]) == 2
    line = _error_line(capsys)
    assert f"{out / 'train' / 'shard-000000.tar'}: no space left on the device (writing it needs about" in line
    assert re.search(r"free there\); free some space and run the same command again: finished shards are kept$", line)


def test_a_full_disk_while_extracting_an_archive_says_so_and_how_much_it_needs(tmp_path, capsys, monkeypatch):
    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    archive = kit.imagenette_archive(tmp_path / "imagenette2-320.tgz")
    assert main(["prepare", str(archive), str(tmp_path / "out"), "--size", str(kit.SOLID_SIZE)]) == 2
    line = _error_line(capsys)
    assert f"SOURCE {archive}: no space left on the device to extract it into " in line
    assert re.search(r"\(it needs about \d+\.\d MiB\); free some space", line), line


def test_a_run_record_larger_than_the_bound_is_refused_by_name_without_being_read(tmp_path, monkeypatch):
    from alexnet import atomic

    path = tmp_path / "run-relu-lr0.003-seed0.json"
    atomic.write_json(path, {"run": {"points": list(range(100))}})
    assert atomic.read_run_record(path)["run"]["points"][-1] == 99
    assert atomic.read_run_record(tmp_path / "missing.json") is None
    monkeypatch.setattr(atomic, "MAX_RUN_RECORD_BYTES", 64)
    with pytest.raises(UserError, match=r"run-relu-lr0\.003-seed0\.json: not a run record \(larger than 64 bytes\)"):
        atomic.read_run_record(path)
