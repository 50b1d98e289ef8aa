"""JPEG decoding on the training device (``decode="device"``): nvJPEG on CUDA, through torchvision.

With ``make_loader(..., decode="device")`` the loader's workers do no decoding at all: each batch
is the stored JPEG bytes of its samples, packed into one uint8 tensor with their sizes, plus the
labels and crop windows (the same windows as the default path, so the same crops). The stage that
:class:`alexnet.data.prefetch.DevicePrefetcher` runs in its thread (on a side CUDA stream) hands
the JPEGs to ``torchvision.io.decode_jpeg(..., device=...)``, which on CUDA decodes the whole
batch with nvJPEG, then cuts every crop window out of the 256x256 images in one gather, mirrored
where flipped. What comes out is what the default loader gives, on the device: uint8
``[N, 3, S, S]`` (ten crops: ``[N, 10, 3, S, S]``), channels-last in memory, labels and windows.

When it pays: when the CPU cores, not the GPU, limit training (fewer than about one core per
2,450 images/s the GPU can train, the rate of one loader worker on the development machine;
BENCHMARKS.md). nvJPEG's output can differ from libjpeg's
(Pillow) by a level or two in some pixels: the inverse DCT and the chroma upsampling are not
specified exactly by the JPEG standard. Needs torchvision 0.19 or newer (batched decode) and
shards stored as JPEG (``alexnet prepare --format jpeg``, the default).
"""

from __future__ import annotations

import numpy as np
import torch

from alexnet.data.loader import CropBatches
from alexnet.errors import UserError


def jpeg_decoder():
    """torchvision's ``decode_jpeg`` and ``ImageReadMode``, or a UserError saying what to install."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as err:
        raise UserError("--decode device needs torchvision (its decode_jpeg uses nvJPEG on CUDA): "
                        f"install the torchvision that matches your PyTorch ({err})") from None
    return decode_jpeg, ImageReadMode


def check_device_decoding(dataset) -> None:
    """Fail now, with what to do, when ``dataset`` cannot be decoded on the device: its samples
    are not JPEGs, or torchvision is missing."""
    if dataset.extension != "jpg":
        raise UserError(f"--decode device decodes JPEG shards, and {getattr(dataset, 'root', 'the dataset')} "
                        f"stores {dataset.extension!r} samples; prepare it with --format jpeg")
    jpeg_decoder()


def crop_batch(images: torch.Tensor, windows: torch.Tensor, crop_size: int) -> torch.Tensor:
    """The crops of a batch of images at their windows, mirrored where flipped, in one gather.

    ``images``: ``[N, H, W, C]`` (any memory layout); ``windows``: ``[N, V, 3]`` (top, left,
    flipped). Returns ``[N, V, S, S, C]`` contiguous: the loader's NHWC storage.
    """
    n, views = windows.shape[:2]
    span = torch.arange(crop_size, device=images.device)
    top, left, flipped = windows.to(images.device).unbind(-1)
    rows = top[..., None] + span  # [N, V, S]
    cols = torch.where(flipped[..., None].bool(), left[..., None] + (crop_size - 1) - span,
                       left[..., None] + span)
    sample = torch.arange(n, device=images.device)[:, None, None, None]
    return images[sample, rows[..., :, None], cols[..., None, :]]


class EncodedBatches(CropBatches):
    """Batches of stored JPEG bytes with their labels and windows (see the module docstring).

    ``self[sample numbers]`` (in a worker) returns ``(data, sizes, labels, windows)``: the JPEGs
    end to end in one uint8 tensor, their byte counts, int64 labels and ``[N, views, 3]`` windows.
    :meth:`stage` turns that into the loader's usual batch on a device.
    """

    def __init__(self, dataset, crop_size: int, windows: str = "random", **options):
        if options.get("ring") is not None:
            raise ValueError("EncodedBatches has no ring: its batches are small")
        super().__init__(dataset, crop_size, windows, **options)
        check_device_decoding(dataset)  # here, in the training process, not in a worker

    def __getitem__(self, indices):
        indices = np.asarray(indices, np.int64)
        encoded = [self.read(i) for i in indices]
        sizes = np.array([len(e) for e in encoded], np.int64)
        data = np.frombuffer(b"".join(encoded), np.uint8).copy()
        return (torch.from_numpy(data), torch.from_numpy(sizes), torch.from_numpy(self.labels[indices]),
                torch.from_numpy(self.sample_windows(indices)))

    def stage(self, batch, device: torch.device):
        """``(images, labels, windows)`` on ``device`` from a batch of JPEG bytes: decoded there
        (nvJPEG on CUDA), checked against the mean image's size, cropped."""
        data, sizes, labels, windows = batch
        decode_jpeg, mode = jpeg_decoder()
        jpegs = list(torch.split(data, sizes.tolist()))
        decoded = decode_jpeg(jpegs, mode=mode.RGB, device=device)
        shapes = {tuple(image.shape) for image in decoded}
        expected = (3, *self.image_size)
        if shapes != {expected}:
            bad = sorted(shapes - {expected})[0]
            raise UserError(f"a sample of {getattr(self.dataset, 'root', 'the dataset')} decodes to "
                            f"{'x'.join(map(str, bad[1:]))}x{bad[0]}, expected "
                            f"{self.image_size[0]}x{self.image_size[1]}x3 like its mean image")
        images = torch.stack(decoded).permute(0, 2, 3, 1)  # NHWC view of NCHW storage
        windows = windows.to(device, non_blocking=True)
        crops = crop_batch(images, windows, self.crop_size)
        return self.as_batch(crops, labels.to(device, non_blocking=True), windows)
