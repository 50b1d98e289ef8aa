import numpy as np
import pytest
import torch

from alexnet.data.transforms import (TEN_CROP_ORDER, DeviceTransform, centre_window, crop_into,
                                     cut_at_windows, pca_colour_augmentation, random_windows,
                                     ten_crop_windows, view_windows)


def crop_numpy(image, window, size):
    top, left, flipped = window
    patch = image[top:top + size, left:left + size]
    return patch[:, ::-1] if flipped else patch


def test_random_windows_cover_every_position_and_flip_about_half():
    windows = random_windows(np.arange(20000), (256, 256), 227, seed=0, epoch=0)
    assert windows.dtype == np.int64 and windows.shape == (20000, 3)
    assert set(windows[:, 0]) == set(range(30)) and set(windows[:, 1]) == set(range(30))
    assert abs(windows[:, 2].mean() - 0.5) < 0.02
    assert set(windows[:, 2]) == {0, 1}


def test_random_windows_depend_only_on_seed_epoch_and_sample():
    one = random_windows(np.array([3, 7, 11]), (256, 256), 227, seed=1, epoch=2)
    again = random_windows(np.array([11, 3]), (256, 256), 227, seed=1, epoch=2)
    assert np.array_equal(again, one[[2, 0]])
    other_epoch = random_windows(np.arange(100), (256, 256), 227, seed=1, epoch=3)
    assert not np.array_equal(other_epoch, random_windows(np.arange(100), (256, 256), 227,
                                                          seed=1, epoch=2))


def test_crop_and_flip_can_be_switched_off():
    fixed = random_windows(np.arange(50), (256, 256), 227, seed=0, epoch=0, random_crop=False)
    assert (fixed[:, :2] == 14).all() and fixed[:, 2].any()
    unflipped = random_windows(np.arange(50), (256, 256), 227, seed=0, epoch=0, flip=False)
    assert not unflipped[:, 2].any() and len(set(unflipped[:, 0])) > 1


def test_the_ten_crops_are_corners_then_centre_then_the_same_mirrored():
    windows = ten_crop_windows((256, 256), 227)
    expected = [(0, 0), (0, 29), (29, 0), (29, 29), (14, 14)]
    assert windows.tolist() == [[t, l, 0] for t, l in expected] + [[t, l, 1] for t, l in expected]
    assert len(TEN_CROP_ORDER) == 10
    assert centre_window((256, 256), 227).tolist() == [14, 14, 0]
    assert centre_window((40, 60), 32).tolist() == [4, 14, 0]
    # the test views every user of them takes (loader, inference, the CIFAR experiments)
    assert view_windows((256, 256), 227, "ten").tolist() == windows.tolist()
    assert view_windows((40, 60), 32, "centre").tolist() == [[4, 14, 0]]


def test_a_crop_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        centre_window((200, 256), 227)


def test_crop_into_equals_slicing_the_image_at_the_window():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out = np.empty((32, 32, 3), np.uint8)
    for window in [(0, 0, 0), (8, 18, 0), (3, 5, 1)]:
        crop_into(out, image, window)
        assert np.array_equal(out, crop_numpy(image, window, 32))
    crop_into(out, image, (3, 5, 1))
    assert np.array_equal(out[:, 0], image[3:35, 36])  # mirrored: first column is the window's last


def test_mean_image_is_cut_at_each_window_and_mirrored_when_flipped():
    mean = np.random.default_rng(1).random((40, 50, 3)).astype(np.float32)
    windows = np.array([[0, 0, 0], [8, 18, 1], [5, 2, 0], [8, 0, 1]])
    cut = cut_at_windows(torch.from_numpy(mean), torch.from_numpy(windows)[:, None], 32)
    assert cut.shape == (4, 1, 32, 32, 3)
    for k, window in enumerate(windows):
        assert np.array_equal(cut[k, 0].numpy(), crop_numpy(mean, window, 32))


def make_transform(mean=None, **options):
    eigvecs, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    mean = np.full((40, 40, 3), 100.0) if mean is None else mean
    return DeviceTransform(mean, np.array([4000.0, 400.0, 40.0]), eigvecs, 32, **options), eigvecs


def test_device_transform_subtracts_the_mean_at_the_window_without_noise_at_test_time():
    rng = np.random.default_rng(3)
    mean = rng.random((40, 40, 3)).astype(np.float32) * 255
    transform, _ = make_transform(mean)
    transform.eval()
    images = torch.from_numpy(rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8))
    windows = torch.tensor([[0, 0, 0], [8, 8, 1], [4, 2, 1]])
    out = transform(images, windows)
    assert out.dtype == torch.float32 and out.shape == images.shape
    for k in range(3):
        expected = images[k].numpy() - crop_numpy(mean, windows[k].tolist(), 32).transpose(2, 0, 1)
        np.testing.assert_allclose(out[k].numpy(), expected, rtol=0, atol=1e-4)


def recovered_alphas(transform, eigvecs, magnitude, count):
    images = torch.zeros(count, 3, 32, 32, dtype=torch.uint8)
    noise = transform(images, torch.zeros(count, 3, dtype=torch.int64))
    return noise, (noise[:, :, 0, 0].double().numpy() @ eigvecs) / magnitude


def test_pca_noise_is_one_colour_per_image_with_alpha_std_0_1():
    """Section 4.1: add [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T, a_i ~ N(0, 0.1), same for all pixels."""
    transform, eigvecs = make_transform(subtract_mean=False)
    noise, alphas = recovered_alphas(transform, eigvecs, np.array([4000, 400, 40]) / 255, 4000)
    assert torch.equal(noise, noise[:, :, :1, :1].expand_as(noise))  # constant over pixels
    assert np.abs(alphas.mean(axis=0)).max() < 0.01
    np.testing.assert_allclose(alphas.std(axis=0), 0.1, rtol=0.05)
    assert abs(np.corrcoef(alphas.T)[0, 1]) < 0.1  # independent per component


def test_pca_colour_augmentation_adds_the_basis_times_one_alpha_per_image_to_every_pixel():
    """Section 4.1 by name: image n gets [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T, alpha drawn from the generator."""
    images = torch.rand(5, 3, 4, 6) * 255
    basis = torch.randn(3, 3)
    out = pca_colour_augmentation(images, basis, 0.1, torch.Generator().manual_seed(3))
    alpha = torch.randn(5, 3, generator=torch.Generator().manual_seed(3)) * 0.1
    for n in range(5):
        shift = basis @ alpha[n]
        assert torch.allclose(out[n] - images[n], shift[:, None, None].expand(3, 4, 6), atol=1e-4)


def test_pca_noise_with_the_authors_stdev_scale():
    transform, eigvecs = make_transform(subtract_mean=False, pca_scale="stdev", pca_std=0.2)
    _, alphas = recovered_alphas(transform, eigvecs, np.sqrt([4000, 400, 40]), 4000)
    np.testing.assert_allclose(alphas.std(axis=0), 0.2, rtol=0.05)


def test_pca_noise_is_deterministic_given_seed_epoch_rank_and_position():
    def noise(seed=0, epoch=0, rank=0, start=0, batches=2):
        transform, _ = make_transform(subtract_mean=False, seed=seed, rank=rank, world_size=2)
        transform.set_epoch(epoch, start)
        images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
        return [transform(images, torch.zeros(4, 3, dtype=torch.int64)) for _ in range(batches)]
    first = noise()
    assert all(torch.equal(a, b) for a, b in zip(first, noise()))
    assert not torch.equal(first[0], first[1])
    for other in (noise(seed=1), noise(epoch=1), noise(rank=1)):
        assert not torch.equal(first[0], other[0])
    # resuming after one batch of 4 per rank on 2 ranks (global position 8) draws batch 2's noise
    assert torch.equal(noise(start=8, batches=1)[0], first[1])


def test_switches_turn_off_mean_and_noise():
    transform, _ = make_transform(subtract_mean=False, pca_std=0)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(transform(images, torch.zeros(2, 3, dtype=torch.int64)), images.float())


def test_imagenet_normalization_is_torchvisions():
    transform = DeviceTransform(None, None, None, 32, pca_std=0, normalization="imagenet")
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    expected = (images.float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / \
        torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    out = transform(images, torch.zeros(2, 3, dtype=torch.int64))
    torch.testing.assert_close(out, expected)


def test_ten_crop_batches_keep_their_shape_and_each_crop_its_own_mean_window():
    mean = np.random.default_rng(4).random((40, 40, 3)).astype(np.float32)
    transform, _ = make_transform(mean)
    transform.eval()
    windows = torch.from_numpy(np.stack([ten_crop_windows((40, 40), 32)] * 2))
    out = transform(torch.zeros(2, 10, 3, 32, 32, dtype=torch.uint8), windows)
    assert out.shape == (2, 10, 3, 32, 32)
    for v, window in enumerate(windows[1].tolist()):
        expected = -crop_numpy(mean, window, 32).transpose(2, 0, 1)
        np.testing.assert_allclose(out[1, v].numpy(), expected, atol=1e-6)


def test_wrong_image_size_is_refused():
    transform, _ = make_transform()
    with pytest.raises(ValueError, match="expected images"):
        transform(torch.zeros(1, 3, 30, 30, dtype=torch.uint8), torch.zeros(1, 3, dtype=torch.int64))
