"""PreparedDataset: random access by sample number over a prepared folder, cheap to hand to workers."""

from __future__ import annotations

import json
import multiprocessing
import pickle

import numpy as np
import pytest

from alexnet.data.dataset import PreparedDataset
from alexnet.data.images import decode
from alexnet.data.prepare import prepare
from alexnet.errors import UserError
from tests import kit


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    kit.image_folder(root / "src", per_class=4, val_per_class=2)
    return prepare(root / "src", root / "out", size=16, shard_size=5, workers=2, progress=False)


def test_items_are_uint8_images_and_class_indices(prepared):
    ds = PreparedDataset(prepared, "train")
    assert len(ds) == 12 and ds.labels.dtype == np.int64
    image, label = ds[np.int64(5)]  # numpy integers index too
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert isinstance(label, int) and label == ds.labels[5] == 1
    data, label = ds.read(5)
    assert isinstance(data, bytes) and np.array_equal(decode(data, "jpg"), image) and label == 1
    assert np.array_equal(ds[-1][0], ds[11][0])


def test_classes_mean_and_pca_come_from_the_training_split(prepared):
    train, val = PreparedDataset(prepared, "train"), PreparedDataset(prepared, "val")
    assert [c["id"] for c in val.classes] == kit.WNIDS and val.class_names[0].startswith("tench")
    assert np.array_equal(train.mean, val.mean) and val.mean.shape == (16, 16, 3) and val.mean.dtype == np.float32
    assert val.pca_eigvals.shape == (3,) and val.pca_eigvecs.shape == (3, 3)
    assert np.allclose(val.pca_eigvecs.T @ val.pca_eigvecs, np.eye(3))
    # solid images of three colours: the mean image is their average colour
    expected = np.mean([kit.colour(c) for c in range(3)], axis=0)
    assert np.abs(train.mean - expected).max() < 2.5


def test_out_of_range_index_raises_index_error(prepared):
    ds = PreparedDataset(prepared, "val")
    with pytest.raises(IndexError):
        ds.read(len(ds))


def test_pickles_small_whatever_its_size_and_reads_after_unpickling(prepared):
    ds = PreparedDataset(prepared, "train")
    ds.read(0)  # opens a file handle: it must not travel
    blob = pickle.dumps(ds)
    assert len(blob) < 4000  # no per-sample data: the index is memory-mapped again on arrival
    copy = pickle.loads(blob)
    assert all(copy.read(i) == ds.read(i) for i in range(len(ds)))


def _read_all(ds):
    return [ds.read(i) for i in range(len(ds))]


_INHERITED: list[PreparedDataset] = []


def _read_inherited(_):
    return _read_all(_INHERITED[0])


def test_forked_workers_open_their_own_file_handles(prepared):
    ds = PreparedDataset(prepared, "train")
    expected = _read_all(ds)  # the parent holds open handles before forking
    _INHERITED[:] = [ds]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_read_inherited, [0, 1]) == [expected, expected]
        assert pool.map(_read_all, [ds, ds]) == [expected, expected]  # and when sent pickled
    assert _read_all(ds) == expected


def test_a_folder_that_is_not_prepared_is_a_clear_user_error(tmp_path, prepared):
    with pytest.raises(UserError, match="not a prepared dataset.*alexnet prepare"):
        PreparedDataset(tmp_path, "train")
    (tmp_path / "meta.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(UserError, match="not the meta.json of a prepared dataset"):
        PreparedDataset(tmp_path, "train")
    with pytest.raises(UserError, match="no split 'test'.*train, val"):
        PreparedDataset(prepared, "test")


def _pillow_decode(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_stored_jpegs_decode_to_pillows_pixels(prepared):
    """simplejpeg (a dependency) reads the shards with Pillow's libjpeg-turbo settings."""
    from alexnet.data import images

    assert images.jpeg_library() == "simplejpeg"
    ds = PreparedDataset(prepared, "train")
    for i in range(len(ds)):
        data = ds.read(i)[0]
        ours, pillow = decode(data, ds.extension), _pillow_decode(data)
        assert ours.dtype == np.uint8 and ours.shape == pillow.shape
        assert np.abs(ours.astype(int) - pillow.astype(int)).max() <= 1  # equal on the machines we test


def test_what_simplejpeg_cannot_read_goes_to_pillow(monkeypatch):
    import io

    from PIL import Image

    from alexnet.data import images

    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, "PNG")
    assert np.array_equal(decode(png.getvalue(), "jpg"), pixels)  # a PNG stored as .jpg
    jpeg = images.encode(pixels, "jpeg")
    with pytest.raises(OSError, match="truncated"):
        decode(jpeg[: len(jpeg) // 2], "jpg")
    monkeypatch.setattr(images, "simplejpeg", None)  # installed without it: Pillow decodes
    assert images.jpeg_library() == "pillow"
    assert np.array_equal(decode(jpeg, "jpg"), _pillow_decode(jpeg))
