"""JPEG decoding on the training device (``decode="device"``): nvJPEG on CUDA, through torchvision.

With ``make_loader(..., decode="device")`` the loader's workers only read: each batch is the stored
JPEG bytes of its samples packed into one uint8 tensor with their sizes, plus the labels and the
same crop windows as the default path (:class:`alexnet.data.batches.EncodedBatches`). The stage
of :class:`alexnet.data.prefetch.DevicePrefetcher` (on a side CUDA stream) decodes the batch with
``torchvision.io.decode_jpeg(..., device=...)`` (:func:`decode_jpegs`) and cuts the windows in one
gather (:func:`alexnet.data.transforms.cut_at_windows`): what the default loader gives, on the device.

When it pays: when the CPU cores, not the GPU, limit training (fewer than about one core per 2,450
images/s the GPU can train, one loader worker's rate on the development machine; BENCHMARKS.md).
nvJPEG's pixels can differ from libjpeg's (Pillow) by a level or two: the JPEG standard does not
fix the inverse DCT and chroma upsampling exactly. Needs torchvision 0.19 or newer and JPEG shards
(``alexnet prepare --format jpeg``, the default).

Imports neither torch nor numpy, so that the command-line options can take :data:`DECODERS` from it.
"""

from __future__ import annotations

from alexnet.errors import UserError

DECODERS = ("workers", "device")  # make_loader's decode=, `--decode` on the command line


def torchvision_decode_jpeg():
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
    torchvision_decode_jpeg()


def decode_jpegs(data, sizes, device) -> list:
    """The JPEGs packed end to end in ``data`` (a uint8 tensor; ``sizes``: their byte counts),
    decoded to RGB on ``device`` in one call (nvJPEG on CUDA): ``[3, H, W]`` uint8 tensors."""
    decode_jpeg, mode = torchvision_decode_jpeg()
    return decode_jpeg(list(data.split(sizes.tolist())), mode=mode.RGB, device=device)
