"""Data augmentation of paper section 4.1: workers copy out uint8 crop windows ``(top, left,
flipped)`` (:func:`random_windows` for training, :func:`centre_window` and :func:`ten_crop_windows`
for testing); :class:`DeviceTransform` does the float work batched on the device: the mean image cut
at each window (section 2) and PCA colour noise (:func:`pca_colour_augmentation`).
"""

import numpy as np
import torch

from alexnet.data.sampler import positions_before

TEN_CROP_ORDER = ("top-left", "top-right", "bottom-left", "bottom-right", "centre", "top-left flipped",
                  "top-right flipped", "bottom-left flipped", "bottom-right flipped", "centre flipped")

# torchvision's per-channel statistics (0-1 scale), for weights trained with them (`alexnet-owt`).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: 64 well-mixed bits from each uint64 (vectorised, wraps on overflow)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _check_sizes(image_size: tuple[int, int], crop_size: int) -> tuple[int, int]:
    height, width = image_size
    if not 0 < crop_size <= min(height, width):
        raise ValueError(f"crop size {crop_size} does not fit in {height}x{width} images")
    return height - crop_size, width - crop_size


def random_windows(indices: np.ndarray, image_size: tuple[int, int], crop_size: int, *, seed: int,
                   epoch: int, random_crop: bool = True, flip: bool = True) -> np.ndarray:
    """Training windows ``[N, 3]`` (top, left, flipped) of samples ``indices`` (section 4.1): uniform, mirrored
    with probability 0.5, hashed from ``(seed, epoch, sample number)`` so a resumed epoch has the same;
    ``random_crop=False`` keeps the centre and ``flip=False`` never mirrors (ablations)."""
    max_top, max_left = _check_sizes(image_size, crop_size)
    key = np.random.SeedSequence([seed, epoch, 0x63726F70]).generate_state(1, np.uint64)
    with np.errstate(over="ignore"):
        bits = _splitmix64(key + (np.asarray(indices, np.uint64) + np.uint64(1)) * _GOLDEN)
    windows = np.empty((len(bits), 3), np.int64)
    if random_crop:
        windows[:, 0] = (bits & np.uint64(0xFFFFFF)) % np.uint64(max_top + 1)
        windows[:, 1] = ((bits >> np.uint64(24)) & np.uint64(0xFFFFFF)) % np.uint64(max_left + 1)
    else:
        windows[:, :2] = (max_top // 2, max_left // 2)
    windows[:, 2] = (bits >> np.uint64(63)) if flip else 0
    return windows


def centre_window(image_size: tuple[int, int], crop_size: int) -> np.ndarray:
    """The central window ``[3]``, not mirrored (single-crop testing)."""
    return ten_crop_windows(image_size, crop_size)[TEN_CROP_ORDER.index("centre")]


def ten_crop_windows(image_size: tuple[int, int], crop_size: int) -> np.ndarray:
    """The paper's ten test windows ``[10, 3]`` in the order of :data:`TEN_CROP_ORDER` (section 4.1)."""
    max_top, max_left = _check_sizes(image_size, crop_size)
    corners = [(0, 0), (0, max_left), (max_top, 0), (max_top, max_left), (max_top // 2, max_left // 2)]
    return np.array([(t, l, f) for f in (0, 1) for t, l in corners], np.int64)


def view_windows(image_size: tuple[int, int], crop_size: int, views: str) -> np.ndarray:
    """The test windows ``[V, 3]``: section 4.1's ten for ``views="ten"``, else the centre window alone."""
    return ten_crop_windows(image_size, crop_size) if views == "ten" else centre_window(image_size, crop_size)[None]


def crop_into(out: np.ndarray, image: np.ndarray, window) -> None:
    """Copy ``image`` (HxWx3) cut at ``window`` into ``out`` (SxSx3), mirrored when flipped."""
    top, left, flipped = (int(v) for v in window)
    out[...] = image[top:top + out.shape[0], left:left + out.shape[1]]
    if flipped:  # torch mirrors 3-byte pixels ten times faster than numpy's negative-stride copy
        mirrored = torch.from_numpy(out)
        mirrored.copy_(mirrored.flip(1))


def cut_at_windows(images: torch.Tensor, windows: torch.Tensor, crop_size: int) -> torch.Tensor:
    """``images`` ``[N, H, W, C]`` (or one ``[H, W, C]`` for all: the mean) cut at ``windows`` ``[N, V, 3]``,
    mirrored where flipped, in one gather on their device: ``[N, V, S, S, C]`` contiguous."""
    span = torch.arange(crop_size, device=images.device)
    top, left, flipped = windows.to(images.device).unbind(-1)
    rows = (top[..., None] + span)[..., :, None]  # [N, V, S, 1]
    cols = torch.where(flipped[..., None].bool(), left[..., None] + (crop_size - 1) - span,
                       left[..., None] + span)[..., None, :]  # [N, V, 1, S]
    if images.dim() == 3:
        return images[rows, cols]
    sample = torch.arange(len(windows), device=images.device)[:, None, None, None]
    return images[sample, rows, cols]


def pca_colour_augmentation(images: torch.Tensor, basis: torch.Tensor, std: float,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Section 4.1, "Augmentation 2": alter the intensities of the RGB channels of each image.

    To every pixel of image ``n`` (``images [N, 3, S, S]``, float, 0-255) add ``basis @ alpha_n``, with
    ``alpha_n ~ N(0, std)`` drawn once per image from ``generator`` and ``basis`` the RGB covariance's
    eigenvectors times their magnitudes, ``[p1, p2, p3] diag(m1, m2, m3)`` (the paper: eigenvalues).
    """
    alpha = torch.randn(len(images), 3, generator=generator, device=images.device) * std
    return images + (alpha @ basis.T)[:, :, None, None]


class DeviceTransform(torch.nn.Module):
    """The float half of the input pipeline, batched on the training device (sections 2 and 4.1).

    ``forward(images, windows)``: the loader's uint8 ``images [N, (10,) 3, S, S]`` to float32, 0-255
    RGB minus the mean image cut at each window (``subtract_mean=False``: ablation), or
    ``normalization="imagenet"``. In training mode with ``pca_std > 0``, PCA colour augmentation first,
    with the 0-255 covariance's ``eigvals``/``eigvecs`` (columns) and ``pca_scale`` magnitudes:
    ``"eigenvalue"`` (default: ``eigvals / 255``, the 0-1 scale's, as common reimplementations) or
    ``"stdev"`` (``sqrt(eigvals)``, as cuda-convnet2). Call :meth:`set_epoch` every epoch with the
    loader's ``start``: the noise is seeded per batch by position, so a resumed epoch draws the same.
    """

    def __init__(self, mean, eigvals, eigvecs, crop_size: int, pca_std: float = 0.1,
                 subtract_mean: bool = True, normalization: str = "mean_image", *,
                 pca_scale: str = "eigenvalue", seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__()
        if normalization not in ("mean_image", "imagenet"):
            raise ValueError(f"normalization must be 'mean_image' or 'imagenet', got {normalization!r}")
        if pca_scale not in ("eigenvalue", "stdev"):
            raise ValueError(f"pca_scale must be 'eigenvalue' or 'stdev', got {pca_scale!r}")
        self.crop_size, self.pca_std, self.normalization = crop_size, float(pca_std), normalization
        self.subtract_mean = subtract_mean and normalization == "mean_image"
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.position, self._generator = 0, 0, None
        if self.subtract_mean:
            mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
            _check_sizes(tuple(mean.shape[:2]), crop_size)
            self.register_buffer("mean_image", mean)
        if self.pca_std > 0:
            eigvals = torch.as_tensor(np.asarray(eigvals), dtype=torch.float32)
            magnitude = eigvals / 255 if pca_scale == "eigenvalue" else eigvals.clamp(min=0).sqrt()
            eigvecs = torch.as_tensor(np.asarray(eigvecs), dtype=torch.float32)
            self.register_buffer("pca_basis", eigvecs * magnitude)  # column j: p_j * magnitude_j
        self.register_buffer("channel_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255)
        self.register_buffer("channel_std", torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255)

    @classmethod
    def for_dataset(cls, dataset, crop_size: int, **options) -> "DeviceTransform":
        """The transform with ``dataset``'s mean image and PCA (a ``PreparedDataset``)."""
        return cls(dataset.mean, dataset.pca_eigvals, dataset.pca_eigvecs, crop_size, **options)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Start drawing the noise of ``epoch`` at global position ``start`` (as the sampler)."""
        self.epoch = epoch
        self.position = positions_before(start, self.rank, self.world_size)

    def _generator_for(self, count: int, device: torch.device) -> torch.Generator:
        """The generator of the next ``count`` images' colour noise, seeded for where they stand."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        key = np.random.SeedSequence([self.seed, self.epoch, self.rank, self.position]).generate_state(1, np.uint64)
        self._generator.manual_seed(int(key[0] >> np.uint64(1)))
        self.position += count
        return self._generator

    def forward(self, images: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        shape = images.shape
        if shape[-3:] != (3, self.crop_size, self.crop_size):
            raise ValueError(f"expected images [..., 3, {self.crop_size}, {self.crop_size}], got {list(shape)}")
        x = images.reshape(-1, *shape[-3:]).float()
        if self.subtract_mean:
            mean = cut_at_windows(self.mean_image, windows.reshape(-1, 1, 3), self.crop_size)
            x = x - mean[:, 0].permute(0, 3, 1, 2)
        if self.training and self.pca_std > 0:
            x = pca_colour_augmentation(x, self.pca_basis, self.pca_std, self._generator_for(len(x), x.device))
        if self.normalization == "imagenet":
            x = (x - self.channel_mean) / self.channel_std
        return x.reshape(shape)
