"""A prepared dataset is checked: damaged shards are found and named, missing files are one-line
errors, a failed `alexnet prepare` leaves nothing that blocks the next, and archives of any layout work."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.data import prepare as prepare_module
from alexnet.data.dataset import PreparedDataset
from alexnet.errors import UserError
from tests import kit

SIZE = 80  # large enough for the tiny network's 67x67 crops


def prepare(capsys, *args) -> kit.Ran:
    return kit.alexnet_command(capsys, "prepare", *args)


def prepared(capsys, root: Path, *options) -> Path:
    kit.image_folder(root / "src", per_class=4, val_per_class=2)
    status, _, err = prepare(capsys, root / "src", root / "out", "--size", SIZE, "--shard-size", 5,
                             "--workers", 1, *options)
    assert status == 0, err
    return root / "out"


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def model_file(path: Path, out: Path, with_mean: bool) -> Path:
    from alexnet import save_model

    extra = {"mean": torch.from_numpy(np.load(out / "mean.npy"))} if with_mean else {}
    save_model(kit.tiny_alexnet(3), path, class_names=kit.WNIDS, **extra)
    return path


def evaluate(capsys, model: Path, out: Path) -> kit.Ran:
    return kit.alexnet_command(capsys, "evaluate", model, "--data", out, "--crops", "center", "--device", "cpu",
                               "--workers", "1", "--json")


# ---------------------------------------------------------------- checksums


def test_verify_finds_every_file_whole_after_prepare(tmp_path, capsys):
    out = prepared(capsys, tmp_path)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["checksums"]["algorithm"] == "sha256"
    assert set(meta["checksums"]["files"]) == {
        "mean.npy", "train/shard-000000.tar", "train/shard-000001.tar", "train/shard-000002.tar",
        "val/shard-000000.tar", "val/shard-000001.tar",
        *(f"{s}/{f}.npy" for s in ("train", "val") for f in ("index", "labels", "crc32"))}
    for name, digest in meta["checksums"]["files"].items():  # what sha256sum prints
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    status, said, _ = prepare(capsys, "--verify", out)
    assert status == 0 and said == f"all 5 shards whole (and 7 index and mean files) in {out}\n"


def test_a_flipped_byte_in_a_shard_is_named_by_verify_and_by_every_reader(tmp_path, capsys):
    out = prepared(capsys, tmp_path)
    ds = PreparedDataset(out, "val")
    shard, offset, size = (int(v) for v in np.load(out / "val" / "index.npy")[3])  # sample 3: shard 0
    flip_byte(out / "val" / f"shard-{shard:06d}.tar", offset + size // 2)  # inside the image's bytes

    status, said, _ = prepare(capsys, "--verify", out)
    assert status == 1 and said == f"{out}/val/shard-000000.tar: damaged (its sha256 differs from the one " \
                                   "recorded when it was prepared)\n"
    with pytest.raises(UserError, match=r"val/shard-000000\.tar is damaged: sample 3 of split 'val'"):
        ds.read(3)
    assert ds.read(4)[0]  # the other samples still read
    status, _, err = evaluate(capsys, model_file(tmp_path / "m.pt", out, with_mean=True), out)
    assert status == 2
    assert err.startswith("alexnet evaluate: error: ") and len(err.strip().splitlines()) == 1
    assert "val/shard-000000.tar is damaged: sample 3 of split 'val'" in err and "--verify" in err


def test_damage_outside_the_images_is_found_by_verify(tmp_path, capsys):
    out = prepared(capsys, tmp_path)
    flip_byte(out / "train" / "labels.npy", -1)  # a label changed: no sample's bytes differ
    flip_byte(out / "train" / "shard-000001.tar", 100)  # inside a tar header
    status, said, _ = prepare(capsys, "--verify", out)
    assert status == 1
    assert said.splitlines() == [f"{out}/train/{name}: damaged (its sha256 differs from the one recorded when "
                                 "it was prepared)" for name in ("shard-000001.tar", "labels.npy")]


def test_a_dataset_prepared_before_checksums_keeps_working_and_verify_says_it_has_none(tmp_path, capsys):
    out = prepared(capsys, tmp_path)
    meta = json.loads((out / "meta.json").read_text())
    del meta["checksums"]
    for split in meta["splits"].values():
        (out / split.pop("crc32")).unlink()
    (out / "meta.json").write_text(json.dumps(meta))
    flip_byte(out / "val" / "shard-000000.tar", int(np.load(out / "val" / "index.npy")[0][1]) + 50)
    assert PreparedDataset(out, "val").read(0)[0]  # nothing to check it against: read as it is
    status, said, _ = prepare(capsys, "--verify", out)
    assert status == 0 and "has no checksums" in said and "nothing verified" in said


@pytest.mark.parametrize("name", ["val/index.npy", "val/labels.npy", "meta.json"])
def test_a_missing_file_is_a_one_line_error_naming_it(tmp_path, capsys, name):
    out = prepared(capsys, tmp_path)
    (out / name).unlink()
    status, _, err = evaluate(capsys, model_file(tmp_path / "m.pt", out, with_mean=True), out)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert str(out / name) in err and "alexnet prepare" in err


def test_evaluate_takes_the_mean_from_the_model_file_and_needs_mean_npy_only_without_it(tmp_path, capsys):
    out = prepared(capsys, tmp_path)
    with_mean = model_file(tmp_path / "with.pt", out, with_mean=True)
    status, before, _ = evaluate(capsys, with_mean, out)
    assert status == 0
    (out / "mean.npy").unlink()
    status, after, err = evaluate(capsys, with_mean, out)
    assert status == 0, err
    assert json.loads(after)["top1_error"] == json.loads(before)["top1_error"]
    status, _, err = evaluate(capsys, model_file(tmp_path / "without.pt", out, with_mean=False), out)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f"{out / 'mean.npy'} is missing" in err and "--restart" in err


def test_preparing_again_over_a_missing_file_says_to_restart_which_rebuilds_it(tmp_path, capsys):
    out = prepared(capsys, tmp_path)
    whole = tree(out)
    (out / "train" / "index.npy").unlink()
    args = (tmp_path / "src", out, "--size", SIZE, "--shard-size", 5, "--workers", 1)
    status, _, err = prepare(capsys, *args)
    assert status == 2 and f"{out / 'train' / 'index.npy'} is missing" in err and "--restart" in err
    status, _, err = prepare(capsys, *args, "--restart")
    assert status == 0, err
    assert tree(out) == whole


# ---------------------------------------------------------------- runs that failed or were stopped


def test_a_failed_prepare_leaves_nothing_that_blocks_the_corrected_command(tmp_path, capsys):
    out = tmp_path / "out"
    status, _, err = prepare(capsys, tmp_path / "nonexistent", out)
    assert status == 2 and "nonexistent" in err
    assert not out.exists()
    kit.image_folder(tmp_path / "src")
    status, said, err = prepare(capsys, tmp_path / "src", out, "--size", 16)
    assert status == 0, err
    assert "prepared 9 train, 3 val images" in said


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_out_that_cannot_be_a_folder_is_one_line_naming_it_and_the_file_is_untouched(tmp_path, capsys, where):
    source = kit.image_folder(tmp_path / "src")
    blocker = tmp_path / "taken"
    blocker.write_text("a user's file")
    out = blocker if where == "a file" else blocker / "out"
    status, _, err = prepare(capsys, source, out, "--size", 16)
    assert status == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and f"OUT {out}: cannot make the folder" in err
    assert blocker.read_text() == "a user's file"


def test_a_job_record_left_by_a_run_that_wrote_no_shard_does_not_block(tmp_path, capsys):
    out = tmp_path / "out"
    (out / ".partial").mkdir(parents=True)  # what earlier versions left after a source they could not open
    (out / ".partial" / "options.json").write_text(json.dumps({"source": str(tmp_path / "nonexistent")}))
    kit.image_folder(tmp_path / "src")
    status, _, err = prepare(capsys, tmp_path / "src", out, "--size", 16)
    assert status == 0, err


def test_an_unfinished_run_of_another_job_is_kept_unless_restart_is_given(tmp_path, capsys, monkeypatch):
    source = kit.image_folder(tmp_path / "src")
    status, _, _ = prepare(capsys, source, tmp_path / "whole", "--size", 16, "--shard-size", 2)
    assert status == 0
    with monkeypatch.context() as m:
        m.setattr(prepare_module, "finish", lambda *a: None)  # stopped after writing its shards
        status, _, _ = prepare(capsys, source, tmp_path / "out", "--size", 16, "--shard-size", 2, "--quality", 50)
    assert status == 0 and list((tmp_path / "out" / ".partial").glob("*.npz"))
    status, _, err = prepare(capsys, source, tmp_path / "out", "--size", 16, "--shard-size", 2)
    assert status == 2 and "unfinished run of another job" in err and "--restart" in err
    status, _, err = prepare(capsys, source, tmp_path / "out", "--size", 16, "--shard-size", 2, "--restart")
    assert status == 0, err
    assert tree(tmp_path / "out") == tree(tmp_path / "whole")


def test_restart_removes_only_what_prepare_wrote_and_only_once_the_source_opened(tmp_path, capsys):
    out = prepared(capsys, tmp_path)
    whole = tree(out)
    status, _, err = prepare(capsys, tmp_path / "mistyped", out, "--restart")
    assert status == 2 and "mistyped" in err
    assert tree(out) == whole
    kit.write(out / "notes.txt", b"mine")
    kit.write(out / "train" / "mine.txt", b"mine too")
    status, _, err = prepare(capsys, tmp_path / "src", out, "--size", 16, "--restart")
    assert status == 0, err
    assert (out / "notes.txt").read_bytes() == b"mine" and (out / "train" / "mine.txt").read_bytes() == b"mine too"
    assert PreparedDataset(out, "train")[0][0].shape == (16, 16, 3)
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "crc32.npy", "index.npy", "labels.npy", "mine.txt", "shard-000000.tar"]


def test_restart_removes_the_temporaries_of_a_killed_run(tmp_path, capsys):
    out = prepared(capsys, tmp_path)
    killed = ".{}.4242@another-host.abcdef01.tmp"  # a killed writer's, on a host whose processes are not checked
    kit.write(out / killed.format("meta.json"), b"half a meta.json")
    kit.write(out / "train" / killed.format("shard-000009.tar"), b"half a shard")
    status, _, err = prepare(capsys, tmp_path / "src", out, "--size", 16, "--restart")
    assert status == 0, err
    assert not list(out.rglob("*.tmp"))


def test_restart_touches_nothing_in_a_folder_that_is_another_programs(tmp_path, capsys):
    kit.image_folder(tmp_path / "src")
    kit.write(tmp_path / "out" / "meta.json", b'{"format": "something else"}')
    kit.write(tmp_path / "out" / "mean.npy", b"someone's")
    before = tree(tmp_path / "out")
    status, _, err = prepare(capsys, tmp_path / "src", tmp_path / "out", "--size", 16, "--restart")
    assert status == 2 and "is not the meta.json of a prepared dataset" in err
    assert tree(tmp_path / "out") == before


# ---------------------------------------------------------------- archives; a training split alone


def test_a_tar_gz_of_an_image_folder_with_only_train_at_its_top_holds_out_a_validation_split(tmp_path, capsys):
    for c, wnid in enumerate(kit.WNIDS):
        for n in range(40 if c == 0 else 20):
            kit.write(tmp_path / "folder" / "train" / wnid / f"{n:03d}.jpg", kit.jpeg(c))
    kit.write(tmp_path / "folder" / "train" / "few" / "0.jpg", kit.jpeg(0))  # under 20: none held out
    archive = tmp_path / "train-only.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "folder" / "train", arcname="train")
    for out in ("out", "again"):
        status, said, err = prepare(capsys, archive, tmp_path / out, "--size", 16, "--workers", 1)
        assert status == 0, err
    train, val = PreparedDataset(tmp_path / "out", "train"), PreparedDataset(tmp_path / "out", "val")
    assert [c["id"] for c in train.classes] == ["few", *kit.WNIDS]
    assert "prepared 77 train, 4 val images" in said
    assert "val: held out from the training images, which the source alone has: 1 in 20" in said
    assert np.bincount(val.labels, minlength=4).tolist() == [0, 2, 1, 1]  # 1 in 20 of each class
    for i in range(len(val)):  # each held-out image keeps its class (its colour)
        rgb = val[i][0].reshape(-1, 3).mean(axis=0)
        assert np.abs(rgb - kit.colour(kit.WNIDS.index(val.classes[val.labels[i]]["id"]))).max() < 3
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert "held out from the training images" in meta["splits"]["val"]["note"]
    assert meta["source"]["path"] is None  # the extracted copy is gone: no path that would mislead
    assert meta["stats"]["images"] == 77  # the mean and the PCA: of the training part alone
    assert tree(tmp_path / "again" / "val") == tree(tmp_path / "out" / "val")  # the same split every time
    keys = set()
    for split in ("train", "val"):
        for shard in sorted((tmp_path / "out" / split).glob("shard-*.tar")):
            with tarfile.open(shard) as tar:
                keys |= {m.name for m in tar if m.name.endswith(".jpg")}
    assert len(keys) == 81  # every image once: none both trained on and held out


def test_the_source_folder_is_recorded_absolute_and_an_archive_source_not_at_all(tmp_path, capsys, monkeypatch):
    from alexnet.bench.data import source_images

    kit.image_folder(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    status, _, err = prepare(capsys, "src", "out", "--size", 16)
    assert status == 0, err
    monkeypatch.chdir("/")
    recorded = json.loads((tmp_path / "out" / "meta.json").read_text())["source"]
    assert recorded["given"] == "src" and Path(recorded["path"]) == (tmp_path / "src").resolve()
    assert source_images(tmp_path / "out", None)[0] == (tmp_path / "src" / "train").resolve()
    recorded.update(given="photos.tar.gz", path=None)
    (tmp_path / "out" / "meta.json").write_text(json.dumps({"source": recorded}))
    with pytest.raises(UserError, match=r"records no source folder \(prepared from photos.tar.gz.*give --source DIR"):
        source_images(tmp_path / "out", None)
