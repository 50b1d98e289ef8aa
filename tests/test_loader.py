import os
import threading
import time

import numpy as np
import pytest
import torch

from alexnet.data.dataset import PreparedDataset
from alexnet.data.images import decode
from alexnet.data.batches import CropBatches
from alexnet.data.loader import make_loader
from alexnet.data.prefetch import join_ended
from alexnet.data.prepare import prepare
from alexnet.data.sampler import rank_indices
from alexnet.data.transforms import random_windows, ten_crop_windows
from alexnet.errors import UserError
from tests.kit import WNIDS, StandInDataset, image_folder


@pytest.fixture
def stand_in():
    return StandInDataset()


def collect(loader):
    images, labels, windows = zip(*loader)
    return torch.cat(images), torch.cat(labels), torch.cat(windows)


def crop_numpy(image, window, size):
    top, left, flipped = window
    patch = image[top:top + size, left:left + size]
    return patch[:, ::-1] if flipped else patch


def test_training_batches_are_uint8_crops_at_the_reported_windows(stand_in):
    loader = make_loader(stand_in, 5, train=True, crop_size=40, seed=1, epoch=2, workers=0)
    images, labels, windows = collect(loader)
    assert images.dtype == torch.uint8 and images.shape == (24, 3, 40, 40)
    assert labels.dtype == torch.int64 and windows.dtype == torch.int64 and windows.shape == (24, 3)
    order = rank_indices(24, seed=1, epoch=2)
    assert torch.equal(labels, torch.from_numpy(stand_in.labels[order]))
    assert windows[:, 2].any() and not windows[:, 2].all() and len(set(windows[:, 0].tolist())) > 1
    for k, i in enumerate(order):
        expected = crop_numpy(stand_in.images[i], windows[k].tolist(), 40).transpose(2, 0, 1)
        assert np.array_equal(images[k].numpy(), expected)


def test_workers_give_the_same_batches_as_the_main_process(stand_in):
    """Eight batches through a ring of five shared slots (2 workers x prefetch 2 + 1), all kept:
    every batch the caller holds is its own copy, never overwritten by a later one."""
    options = dict(train=True, crop_size=40, seed=3, epoch=0)
    here = collect(make_loader(stand_in, 3, workers=0, **options))
    there = collect(make_loader(stand_in, 3, workers=2, **options))
    assert all(torch.equal(a, b) for a, b in zip(here, there))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads Linux's list of this process's threads")
def test_an_epoch_on_the_device_leaves_no_thread_ending_when_the_next_loader_forks(stand_in):
    """A thread still ending can hold a lock that a child forked then waits on forever (CPython
    gh-112275, before 3.12): validation's workers hung after a training epoch. Once an epoch's
    batches are out, its prefetch thread and its queues' feeder threads are gone from the kernel too."""
    def epoch():
        return collect(make_loader(stand_in, 3, train=True, crop_size=40, workers=2).to("cpu"))

    epoch()  # threads that live on once started (torch's own) start here
    before = set(os.listdir("/proc/self/task"))
    epoch()
    assert set(os.listdir("/proc/self/task")) <= before


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads Linux's list of this process's threads")
def test_join_ended_returns_once_the_kernel_has_ended_the_threads():
    threads = [threading.Thread(target=time.sleep, args=(0.01 * i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    join_ended(threads)
    assert not {str(t.native_id) for t in threads} & set(os.listdir("/proc/self/task"))


def test_jpeg_samples_are_decoded_then_cropped():
    jpeg = StandInDataset(count=6, encoding="jpeg")
    images, labels, windows = collect(make_loader(jpeg, 4, train=False, crop_size=40, workers=0))
    assert torch.equal(labels, torch.from_numpy(jpeg.labels))
    for i in range(6):
        decoded = decode(jpeg.read(i)[0], "jpg")
        assert np.array_equal(images[i].numpy(), decoded[4:44, 4:44].transpose(2, 0, 1))


def test_evaluation_reads_each_sample_once_over_ranks_with_the_centre_crop(stand_in):
    centres = stand_in.images[:, 4:44, 4:44].transpose(0, 3, 1, 2).reshape(24, -1)
    seen = []
    for rank in range(5):
        images, _, windows = collect(make_loader(stand_in, 4, train=False, crop_size=40, rank=rank,
                                                 world_size=5, workers=0))
        assert (windows == torch.tensor([4, 4, 0])).all()
        for image in images.reshape(len(images), -1).numpy():
            seen += np.flatnonzero((centres == image).all(axis=1)).tolist()
    assert sorted(seen) == list(range(24))


def test_ten_crop_batches_hold_the_ten_windows_in_order(stand_in):
    loader = make_loader(stand_in, 4, train=False, crop_size=40, ten_crop=True, workers=0)
    images, labels, windows = next(iter(loader))
    assert images.shape == (4, 10, 3, 40, 40) and windows.shape == (4, 10, 3)
    expected_windows = ten_crop_windows((48, 48), 40)
    assert (windows == torch.from_numpy(expected_windows)).all()
    for v, window in enumerate(expected_windows):
        expected = crop_numpy(stand_in.images[2], window, 40).transpose(2, 0, 1)
        assert np.array_equal(images[2, v].numpy(), expected)


def test_resumed_loader_yields_the_rest_of_the_epoch(stand_in):
    options = dict(train=True, crop_size=40, seed=0, epoch=5, workers=0, world_size=2, rank=1)
    whole = collect(make_loader(stand_in, 4, **options))
    rest = collect(make_loader(stand_in, 4, start=8, **options))  # one batch of 4 on each rank
    assert all(torch.equal(a[4:], b) for a, b in zip(whole, rest))


def test_limit_reads_that_many_images(stand_in):
    _, labels, _ = collect(make_loader(stand_in, 4, train=True, crop_size=40, limit=10, workers=0))
    assert len(labels) == 10


def test_ablation_switches_reach_the_windows(stand_in):
    _, _, windows = collect(make_loader(stand_in, 8, train=True, crop_size=40, workers=0,
                                        random_crop=False, flip=False))
    assert (windows == torch.tensor([4, 4, 0])).all()


def test_batch_windows_match_the_hash_of_seed_epoch_and_sample(stand_in):
    batches = CropBatches(stand_in, 40, "random", seed=2, epoch=7)
    _, _, windows = batches[np.array([5, 1])]
    assert np.array_equal(windows.numpy(),
                          random_windows(np.array([5, 1]), (48, 48), 40, seed=2, epoch=7))


def test_a_sample_of_the_wrong_size_is_named():
    ds = StandInDataset(count=2)
    ds.blobs[1] = StandInDataset.encode(np.zeros((30, 48, 3), np.uint8), "npy")
    with pytest.raises(UserError, match="sample 1 of stand-in is 30x48x3"):
        CropBatches(ds, 40, "centre")[np.array([0, 1])]


def test_ten_crop_is_refused_for_training(stand_in):
    with pytest.raises(ValueError, match="ten_crop"):
        make_loader(stand_in, 4, train=True, crop_size=40, ten_crop=True)


def test_a_prepared_dataset_loads_through_workers_with_crops_of_its_samples(tmp_path):
    source = image_folder(tmp_path / "source", val_per_class=3, classes=WNIDS[:2], size=(300, 260), noise=255)
    out = prepare(source, tmp_path / "out", encoding="raw",
                  workers=1, progress=False)
    train = PreparedDataset(out, "train")
    loader = make_loader(train, 4, train=True, crop_size=227, seed=0, epoch=1, workers=2)
    images, labels, windows = collect(loader)
    assert images.shape == (6, 3, 227, 227) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    for k, i in enumerate(rank_indices(6, seed=0, epoch=1)):
        expected = crop_numpy(train[i][0], windows[k].tolist(), 227).transpose(2, 0, 1)
        assert np.array_equal(images[k].numpy(), expected) and labels[k] == train[i][1]
