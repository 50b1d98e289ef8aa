"""`alexnet prepare`: every source layout, every image mode, bad files, resumption, exact statistics."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.data import prepare as prepare_module
from alexnet.data import prepare_shards
from alexnet.data.dataset import PreparedDataset
from alexnet.data.images import centre_patch
from alexnet.data.prepare import prepare
from alexnet.data.prepare import pca
from alexnet.classes import imagenet_classes
from alexnet.errors import UserError
from tests import kit

ROOT = Path(__file__).resolve().parents[1]
SIZE = kit.SOLID_SIZE


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- source layouts


def test_image_folder_with_wnid_classes_records_imagenet_names(tmp_path):
    source = kit.image_folder(tmp_path / "src")
    kit.write(source / "val" / "n99999999" / "stray.JPEG", kit.jpeg(0))  # a class train lacks
    out = kit.run_prepare(source, tmp_path / "out")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["val"]["skipped"] == [
        {"path": str(source / "val" / "n99999999" / "stray.JPEG"), "reason": "its class has no training images"}]
    assert [c["id"] for c in meta["classes"]] == kit.WNIDS
    assert [c["index"] for c in meta["classes"]] == [0, 1, 2]
    assert meta["classes"][0]["name"] == "tench, Tinca tinca" == imagenet_classes()["n01440764"]
    assert meta["splits"]["train"]["samples"] == 9 and meta["splits"]["val"]["samples"] == 3
    train = PreparedDataset(out, "train")
    for i in range(len(train)):
        image, label = train[i]
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert kit.solid_class(image) == label


@pytest.mark.parametrize("layout", ["ilsvrc_tars", "ilsvrc_extracted", "kaggle"])
def test_ilsvrc_layouts_label_validation_by_wnid_not_by_devkit_id(tmp_path, layout):
    source = getattr(kit, layout)(tmp_path / "src", per_class=2, n_val=5)
    out = kit.run_prepare(source, tmp_path / "out")
    meta = json.loads((out / "meta.json").read_text())
    assert [c["id"] for c in meta["classes"]] == kit.WNIDS  # sorted wnids = the standard index
    assert "all validation images are kept" in meta["splits"]["val"]["note"]
    val = PreparedDataset(out, "val")
    truth = kit.val_truth(5)
    assert val.labels.tolist() == [kit.WNIDS.index(w) for w in truth]
    assert [kit.solid_class(val[i][0]) for i in range(len(val))] == val.labels.tolist()
    train = PreparedDataset(out, "train")
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [kit.solid_class(train[i][0]) for i in range(len(train))] == train.labels.tolist()


def test_official_tars_are_read_in_place_never_extracted(tmp_path):
    source = kit.ilsvrc_tars(tmp_path / "src")
    before = tree(source)
    out = kit.run_prepare(source, tmp_path / "out")
    assert tree(source) == before
    assert sorted(p.name for p in out.iterdir()) == ["mean.npy", "meta.json", "train", "val"]


def test_keys_trace_back_to_source_files(tmp_path):
    out = kit.run_prepare(kit.ilsvrc_tars(tmp_path / "src", per_class=1, n_val=2), tmp_path / "out")
    with tarfile.open(out / "val" / "shard-000000.tar") as tar:
        assert tar.getnames() == ["ILSVRC2012_val_00000001.jpg", "ILSVRC2012_val_00000001.cls",
                                  "ILSVRC2012_val_00000002.jpg", "ILSVRC2012_val_00000002.cls"]
    with tarfile.open(out / "train" / "shard-000000.tar") as tar:
        assert tar.getnames()[:2] == ["n01440764/n01440764_0.jpg", "n01440764/n01440764_0.cls"]


def test_cifar10_archive_keeps_its_pixels_and_test_batch_is_val(tmp_path):
    archive = kit.cifar10_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=2)
    out = kit.run_prepare(archive, tmp_path / "out", size=32, encoding="raw")
    meta = json.loads((out / "meta.json").read_text())
    assert [c["name"] for c in meta["classes"]] == kit.CIFAR_NAMES
    train, val = PreparedDataset(out, "train"), PreparedDataset(out, "val")
    assert len(train) == 10 and len(val) == 2
    expected = np.concatenate([kit.cifar_pixels(b, 2) for b in range(5)])
    assert all(np.array_equal(train[i][0], expected[i]) for i in range(10))
    assert np.array_equal(val[1][0], kit.cifar_pixels(5, 2)[1]) and val[1][1] == 6
    assert not (out / ".partial").exists()  # the extracted archive went with the work folder


def test_class_folders_alone_are_an_image_folder_whose_validation_split_is_held_out_and_said(tmp_path, capsys):
    from alexnet.cli import main

    made = kit.image_folder(tmp_path / "made", per_class=20, val_per_class=0)  # train/<class>/<image> alone
    shutil.copytree(made / "train", tmp_path / "plain")  # <class>/<image>, as torchvision's ImageFolder takes
    assert main(["prepare", str(tmp_path / "plain"), str(tmp_path / "out"), "--size", str(SIZE)]) == 0
    said = capsys.readouterr().out
    assert "prepared 57 train, 3 val images" in said
    assert "train: the class folders of SOURCE itself (it has no train/ and val/)" in said
    assert "val: held out from the training images" in said and "1 in 20 of each class" in said
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert [c["id"] for c in meta["classes"]] == kit.WNIDS
    assert "held out" in meta["splits"]["val"]["note"]
    files = lambda out: {name: data for name, data in tree(out).items() if name != "meta.json"}
    assert files(tmp_path / "out") == files(kit.run_prepare(made, tmp_path / "from-train"))  # the same split


def test_wrong_source_names_what_was_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"image folder \(SOURCE/train/<class>/<image>.*ILSVRC2012_img_train.tar"):
        kit.run_prepare(tmp_path / "empty", tmp_path / "out")


def test_incomplete_ilsvrc_names_what_is_missing(tmp_path):
    source = kit.ilsvrc_tars(tmp_path / "src")
    (source / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    with pytest.raises(UserError, match="lacks validation labels.*ILSVRC2012_devkit_t12.tar.gz.*LOC_val_solution"):
        kit.run_prepare(source, tmp_path / "out")


# ---------------------------------------------------------------- images


def _encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


IMAGE_MODES = {  # file name -> (bytes, the colour every prepared pixel should have)
    "grey.JPEG": (_encoded(Image.new("L", (20, 30), 100), "JPEG", quality=100), (100, 100, 100)),
    "bilevel.png": (_encoded(Image.new("1", (20, 30), 1), "PNG"), (255, 255, 255)),
    "cmyk.JPEG": (_encoded(Image.new("CMYK", (30, 20), (0, 0, 0, 0)), "JPEG", quality=100), (255, 255, 255)),
    "palette.gif": (_encoded(Image.new("RGB", (20, 20), (200, 40, 10)).convert("P", palette=Image.ADAPTIVE), "GIF"),
                    (200, 40, 10)),
    "palette_transparent.png": (_encoded(Image.new("P", (20, 20), 0), "PNG", transparency=0), (255, 255, 255)),
    "rgba_transparent.png": (_encoded(Image.new("RGBA", (20, 20), (10, 20, 30, 0)), "PNG"), (255, 255, 255)),
    "rgba_opaque.png": (_encoded(Image.new("RGBA", (20, 20), (10, 20, 30, 255)), "PNG"), (10, 20, 30)),
    "grey16.png": (_encoded(Image.fromarray(np.full((20, 25), 32896, np.uint16)), "PNG"), (128, 128, 128)),
    "png_named.JPEG": (_encoded(Image.new("RGB", (20, 20), (1, 2, 3)), "PNG"), (1, 2, 3)),
}


def test_every_image_mode_becomes_the_right_rgb(tmp_path):
    for name, (data, _) in IMAGE_MODES.items():
        kit.write(tmp_path / "src" / "train" / "modes" / name, data)
    out = kit.run_prepare(tmp_path / "src", tmp_path / "out", encoding="raw")
    ds = PreparedDataset(out, "train")
    keys = [name.rsplit(".", 1)[0] for name in sorted(IMAGE_MODES)]
    for i, key in enumerate(keys):
        image, _ = ds[i]
        expected = IMAGE_MODES[sorted(IMAGE_MODES)[i]][1]
        assert image.shape == (SIZE, SIZE, 3), key
        assert np.abs(image.astype(int) - expected).max() <= 1, key


# Sizes whose rescaled width and height are whole numbers (elsewhere the rounding of the rescaled
# length shifts the reference by a fraction of a pixel; centre_patch keeps the exact aspect ratio).
@pytest.mark.parametrize("width, height", [(64, 32), (32, 72), (48, 48), (100, 25), (30, 15)])
def test_centre_patch_equals_rescaling_the_shorter_side_then_cropping_the_centre(width, height):
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image, size = Image.fromarray(pixels), 16
    scale = size / min(width, height)
    full = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
    left, top = (full.width - size) // 2, (full.height - size) // 2
    expected = np.asarray(full.crop((left, top, left + size, top + size))).astype(int)
    patch = centre_patch(image, size)
    assert patch.shape == (size, size, 3)
    assert np.abs(patch.astype(int) - expected).max() <= 1  # only the kept square is resampled


def test_large_jpegs_are_decoded_at_reduced_scale():
    image = Image.open(io.BytesIO(_encoded(Image.new("RGB", (2000, 1600), (9, 99, 199)), "JPEG")))
    patch = centre_patch(image, 256)
    assert image.size == (500, 400)  # draft mode: decoded at 1/4 scale, still >= 256 on both sides
    assert patch.shape == (256, 256, 3) and np.abs(patch.astype(int) - (9, 99, 199)).max() <= 2


# ---------------------------------------------------------------- bad files


def _bad_files(root: Path) -> dict[str, str]:
    """Bad files in class a, with the reason each should be listed with."""
    good = kit.jpeg(0)
    kit.write(root / "train" / "a" / "good.JPEG", good)
    kit.write(root / "train" / "b" / "good2.JPEG", kit.jpeg(1))
    kit.write(root / "train" / "a" / "empty.JPEG", b"")
    kit.write(root / "train" / "a" / "cut_in_header.JPEG", kit.jpeg(0, (200, 150))[:300])
    noisy = _encoded(Image.open(io.BytesIO(kit.noisy_png(0, (200, 150)))), "JPEG")
    kit.write(root / "train" / "a" / "cut_in_data.JPEG", noisy[: len(noisy) * 2 // 3])
    kit.write(root / "train" / "a" / "text.JPEG", b"this is not an image\n")
    (root / "train" / "a" / "dangling.JPEG").symlink_to(root / "nowhere.JPEG")
    return {"empty.JPEG": "empty file", "cut_in_header.JPEG": "truncated", "cut_in_data.JPEG": "truncated",
            "text.JPEG": "not an image",
            "dangling.JPEG": "unreadable file"}


def test_bad_files_are_listed_with_reasons_and_the_rest_is_prepared(tmp_path, capsys):
    reasons = _bad_files(tmp_path / "src")
    out = prepare(tmp_path / "src", tmp_path / "out", size=SIZE, workers=1)
    skipped = json.loads((out / "meta.json").read_text())["splits"]["train"]["skipped"]
    assert {Path(s["path"]).name for s in skipped} == set(reasons)
    for entry in skipped:
        assert reasons[Path(entry["path"]).name] in entry["reason"]
        assert str(tmp_path / "src") in entry["path"]
    shown = capsys.readouterr()
    assert all(f"{name}: " in shown.out + shown.err for name in reasons)
    ds = PreparedDataset(out, "train")
    assert len(ds) == 2 and ds.labels.tolist() == [0, 1]
    assert [kit.solid_class(ds[i][0]) for i in range(2)] == [0, 1]


def test_strict_makes_the_first_bad_file_fatal(tmp_path):
    _bad_files(tmp_path / "src")
    with pytest.raises(UserError, match=r"cut_in_data.JPEG: truncated or corrupt image.*--strict"):
        kit.run_prepare(tmp_path / "src", tmp_path / "out", strict=True)


# ---------------------------------------------------------------- statistics


def _noisy_folder(root: Path, n: int = 12) -> Path:
    for i in range(n):
        kit.write(root / "train" / f"c{i % 3}" / f"img{i:02d}.png", kit.noisy_png(i, (16 + i, 20)))
    return root


def test_mean_image_and_pca_equal_numpy_on_the_same_pixels(tmp_path):
    out = kit.run_prepare(_noisy_folder(tmp_path / "src"), tmp_path / "out", encoding="raw", shard_size=5)
    ds = PreparedDataset(out, "train")
    images = np.stack([ds[i][0] for i in range(len(ds))]).astype(np.float64)
    assert np.allclose(ds.mean, images.mean(axis=0), atol=1e-4)
    assert ds.mean.dtype == np.float32 and ds.mean.shape == (SIZE, SIZE, 3)
    covariance = np.cov(images.reshape(-1, 3), rowvar=False, bias=True)
    values, vectors = np.linalg.eigh(covariance)
    assert np.allclose(ds.pca_eigvals, values[::-1], rtol=1e-9)
    for k in range(3):  # eigenvectors are defined up to sign
        assert np.allclose(np.abs(ds.pca_eigvecs[:, k] @ vectors[:, 2 - k]), 1.0)
    assert np.allclose(covariance @ ds.pca_eigvecs, ds.pca_eigvecs * ds.pca_eigvals)


def test_stats_sample_estimates_from_that_many_images(tmp_path):
    out = kit.run_prepare(_noisy_folder(tmp_path / "src"), tmp_path / "out", encoding="raw", stats_sample=4)
    stats = json.loads((out / "meta.json").read_text())["stats"]
    assert stats["images"] == 4 and stats["exact"] is False
    ds = PreparedDataset(out, "train")
    chosen = np.flatnonzero(prepare_module._stats_selection(len(ds), 4))
    images = np.stack([ds[i][0] for i in chosen]).astype(np.float64)
    assert len(chosen) == 4
    assert np.allclose(ds.mean, images.mean(axis=0), atol=1e-4)
    covariance = np.cov(images.reshape(-1, 3), rowvar=False, bias=True)
    assert np.allclose(ds.pca_eigvals, np.linalg.eigvalsh(covariance)[::-1])


def test_pca_orders_eigenvalues_and_fixes_signs():
    covariance = np.diag([1.0, 9.0, 4.0])
    values, vectors = pca(covariance)
    assert values.tolist() == [9.0, 4.0, 1.0]
    assert np.allclose(vectors, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


# ---------------------------------------------------------------- shards


def test_webdataset_library_reads_the_shards(tmp_path):
    import webdataset as wds

    out = kit.run_prepare(kit.image_folder(tmp_path / "src"), tmp_path / "out", shard_size=4)
    ds = PreparedDataset(out, "train")
    shards = [str(out / s) for s in json.loads((out / "meta.json").read_text())["splits"]["train"]["shards"]]
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    assert len(samples) == len(ds) == 9 and len(shards) == 3
    for i, sample in enumerate(samples):
        assert sample["jpg"] == ds.read(i)[0]
        assert int(sample["cls"]) == ds.read(i)[1] == ds.labels[i]


def test_keys_are_unique_in_a_split_so_the_webdataset_library_reads_every_sample(tmp_path):
    import webdataset as wds

    source = kit.image_folder(tmp_path / "src", per_class=1, val_per_class=0)
    for name in ["dup.JPEG", "dup.png", "x.y.JPEG", "x_y.JPEG", "dup-2.JPEG"]:  # dup and x_y twice each
        kit.write(source / "train" / kit.WNIDS[0] / name, kit.jpeg(0))
    out = kit.run_prepare(source, tmp_path / "out")
    shards = [str(out / s) for s in json.loads((out / "meta.json").read_text())["splits"]["train"]["shards"]]
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    ds = PreparedDataset(out, "train")
    assert len(samples) == len(ds) == 8 and all(sample["jpg"] == ds.read(i)[0] for i, sample in enumerate(samples))
    assert [s["__key__"].split("/")[1] for s in samples[:6]] == [  # in file order; a repeat takes a free -N
        "dup-2", "dup", "dup-3", f"{kit.WNIDS[0]}_0", "x_y", "x_y-2"]


def test_random_access_by_index_equals_sequential_tar_reading(tmp_path):
    out = kit.run_prepare(_noisy_folder(tmp_path / "src", 11), tmp_path / "out", shard_size=3)
    sequential = []
    for shard in sorted((out / "train").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
            for image, cls in zip(members[::2], members[1::2]):
                sequential.append((tar.extractfile(image).read(), int(tar.extractfile(cls).read())))
    ds = PreparedDataset(out, "train")
    order = np.random.default_rng(0).permutation(len(ds))
    assert len(sequential) == len(ds) == 11
    for i in order:
        assert ds.read(i) == sequential[i]


# ---------------------------------------------------------------- resumption


def test_interrupted_run_resumes_to_the_same_result_without_redoing_shards(tmp_path, monkeypatch):
    source = _noisy_folder(tmp_path / "src", 12)
    whole = kit.run_prepare(source, tmp_path / "whole", shard_size=2)
    save = prepare_shards.save_shard
    calls = []

    def interrupted_save(out, split, number, extension, results):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user's Ctrl-C, after three shards were written
        calls.append(number)
        save(out, split, number, extension, results)

    monkeypatch.setattr(prepare_shards, "save_shard", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        kit.run_prepare(source, tmp_path / "resumed", shard_size=2)
    monkeypatch.setattr(prepare_shards, "save_shard", save)
    resumed = tmp_path / "resumed"
    assert not (resumed / "meta.json").exists()
    finished = {n: (resumed / "train" / f"shard-{n:06d}.tar").stat().st_mtime_ns for n in calls}
    killed = f".shard-000004.tar.999999999@{socket.gethostname()}.abcdefgh.tmp"  # a dead writer's temporary
    (resumed / "train" / killed).write_bytes(b"half a shard")
    kit.run_prepare(source, resumed, shard_size=2)
    assert finished == {n: (resumed / "train" / f"shard-{n:06d}.tar").stat().st_mtime_ns for n in calls}
    assert tree(resumed) == tree(whole)


def test_a_shard_without_its_statistics_is_redone(tmp_path, monkeypatch):
    source = _noisy_folder(tmp_path / "src", 6)
    whole = kit.run_prepare(source, tmp_path / "whole", shard_size=2)
    monkeypatch.setattr(prepare_module, "finish", lambda *a: None)  # stop before gathering
    kit.run_prepare(source, tmp_path / "resumed", shard_size=2)
    monkeypatch.undo()
    (tmp_path / "resumed" / ".partial" / "train-000001.npz").unlink()  # killed between the two renames
    (tmp_path / "resumed" / "train" / "shard-000001.tar").write_bytes(b"garbage")
    kit.run_prepare(source, tmp_path / "resumed", shard_size=2)
    assert tree(tmp_path / "resumed") == tree(whole)


def test_killed_process_resumes_to_the_same_result(tmp_path):
    source = _noisy_folder(tmp_path / "src", 60)
    whole = kit.run_prepare(source, tmp_path / "whole", shard_size=2)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "alexnet", "prepare", str(source), str(out), "--size", str(SIZE),
               "--shard-size", "2", "--workers", "1"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while not list((out / "train").glob("shard-*.tar")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the run and its worker, at whatever point they are
    process.wait()
    kit.run_prepare(source, out, shard_size=2)
    assert tree(out) == tree(whole)


def test_a_worker_whose_main_process_was_killed_ends_without_a_traceback():
    """A main process killed with a result still unread in its pipe resets the connection: the
    worker's next read raises ConnectionResetError (not EOFError), which printed a traceback."""
    import multiprocessing

    main, worker = multiprocessing.Pipe()
    worker.send((0, "a result the main process never read"))
    main.close()
    interrupt = signal.getsignal(signal.SIGINT)
    try:
        prepare_shards._serve(worker)  # returns: nothing raised, nothing printed
    finally:
        signal.signal(signal.SIGINT, interrupt)  # a worker ignores Ctrl-C; this test process must not


def test_rerun_on_a_finished_dataset_changes_nothing_and_says_so(tmp_path, capsys):
    out = kit.run_prepare(kit.image_folder(tmp_path / "src"), tmp_path / "out")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    kit.run_prepare(tmp_path / "src", out)
    said = capsys.readouterr().out
    assert "already prepared" in said and "nothing to do" in said
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*")}


def test_rerun_with_other_options_or_source_is_refused(tmp_path):
    out = kit.run_prepare(kit.image_folder(tmp_path / "src"), tmp_path / "out")
    with pytest.raises(UserError, match="other options"):
        kit.run_prepare(tmp_path / "src", out, quality=50)
    with pytest.raises(UserError, match="another source"):
        kit.run_prepare(kit.image_folder(tmp_path / "src2"), out)


# ---------------------------------------------------------------- command line


def test_command_line_prepares_and_reports_bad_source(tmp_path, capsys):
    from alexnet.cli import main

    source = kit.image_folder(tmp_path / "src", per_class=1, val_per_class=0)
    assert main(["prepare", str(source), str(tmp_path / "out"), "--size", "8", "--format", "raw"]) == 0
    said = capsys.readouterr()
    assert "img/s" in said.err and "prepared 3 train images" in said.out
    assert PreparedDataset(tmp_path / "out", "train")[0][0].shape == (8, 8, 3)
    assert main(["prepare", str(tmp_path / "nowhere"), str(tmp_path / "o2")]) == 2
    assert "alexnet prepare: error: SOURCE" in capsys.readouterr().err


def test_a_second_run_on_the_same_out_is_refused_while_the_first_writes(tmp_path):
    import fcntl

    (tmp_path / "out" / ".partial").mkdir(parents=True)
    with open(tmp_path / "out" / ".partial" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what a running prepare holds
        with pytest.raises(UserError, match="being written by another"):
            kit.run_prepare(kit.image_folder(tmp_path / "src"), tmp_path / "out")


# ---------------------------------------------------------------- worker processes


def test_prepare_from_the_folder_that_holds_the_clone_imports_the_same_package_in_its_workers(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "alexnet").symlink_to(ROOT)  # the clone, seen from its parent: a namespace package `alexnet`
    # What an installed `alexnet` command does: its own folder first on the import path (not the
    # current one), the package found by the installer's means (here: the path it adds).
    launcher = kit.write(tmp_path / "bin" / "alexnet", (
        f"import sys\nsys.path.insert(1, {str(ROOT)!r})\nfrom alexnet.cli import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n").encode())
    source = kit.image_folder(tmp_path / "src")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(launcher), "prepare", str(source), str(tmp_path / "out"), "--size",
                           str(SIZE), "--workers", "2"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=kit.HANG_GUARD_S)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert tree(tmp_path / "out") == tree(kit.run_prepare(source, tmp_path / "here"))


@pytest.mark.parametrize("death, said", [("os.kill(os.getpid(), signal.SIGKILL)", "was killed by SIGKILL"),
                                         ("os._exit(3)", "exited with status 3 (its error, if any, is printed above)")])
def test_a_worker_that_dies_ends_the_run_at_once_with_one_line_and_the_rerun_finishes(tmp_path, death, said):
    # Every Python started with this on its path dies as it opens die.JPEG: of prepare's processes,
    # only a worker reads images.
    kit.write(tmp_path / "hook" / "sitecustomize.py", (
        "import os, signal, sys\n"
        "def die(event, args):\n"
        "    if event == 'open' and str(args[0]).endswith('die.JPEG'):\n"
        f"        {death}\n"
        "sys.addaudithook(die)\n").encode())
    source = kit.image_folder(tmp_path / "src", per_class=4)
    die = kit.write(source / "train" / kit.WNIDS[2] / "die.JPEG", kit.jpeg(2))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "alexnet", "prepare", str(source), str(tmp_path / "out"), "--size",
                           str(SIZE), "--shard-size", "4", "--workers", "2"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=kit.HANG_GUARD_S)  # a hang detector only
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[-1].startswith(f"alexnet prepare: error: a worker process {said}; finished shards are kept: "
                                "run the same command again")
    die.unlink()
    assert tree(kit.run_prepare(source, tmp_path / "out", shard_size=4)) == tree(
        kit.run_prepare(source, tmp_path / "whole", shard_size=4))


def test_workers_0_prepares_in_this_process_and_a_negative_count_is_refused(tmp_path, capsys, monkeypatch):
    from alexnet.cli import main

    source = kit.image_folder(tmp_path / "src")
    command = ["prepare", str(source), str(tmp_path / "out"), "--size", str(SIZE)]
    assert main(command + ["--workers", "-2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "alexnet prepare: error: --workers -2: expected a number of worker processes, 1 or more, or 0 to "
        "prepare in this process (default: one per core)")
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(prepare_shards, "_start_workers", lambda count: pytest.fail("started workers"))
    assert main(command + ["--workers", "0"]) == 0
    monkeypatch.undo()
    assert tree(tmp_path / "out") == tree(kit.run_prepare(source, tmp_path / "with-workers"))
