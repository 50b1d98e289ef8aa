"""JPEG decoding on the training device (``decode="device"``): nvJPEG on CUDA, through torchvision 0.19+.

For when CPU cores, not the GPU, limit training (BENCHMARKS.md); nvJPEG's pixels can differ from
Pillow's by a level or two. Imports neither torch nor numpy (the options read :data:`DECODERS`).
"""

from alexnet.errors import UserError

DECODERS = ("workers", "device")  # make_loader's decode=, `--decode` on the command line


def check_device_decoding(dataset) -> None:
    """A UserError saying what to do when ``dataset`` is not JPEGs or torchvision is missing."""
    if dataset.extension != "jpg":
        raise UserError(f"--decode device decodes JPEG shards, and {getattr(dataset, 'root', 'the dataset')} "
                        f"stores {dataset.extension!r} samples; prepare it with --format jpeg")
    try:
        from torchvision.io import ImageReadMode, decode_jpeg  # noqa: F401
    except ImportError as err:
        raise UserError("--decode device needs torchvision (its decode_jpeg uses nvJPEG on CUDA): "
                        f"install the torchvision that matches your PyTorch ({err})") from None


def decode_jpegs(data, sizes, device) -> list:
    """The JPEGs end to end in ``data`` (uint8; ``sizes`` in bytes) as ``[3, H, W]`` RGB on ``device``."""
    from torchvision.io import ImageReadMode, decode_jpeg  # there: check_device_decoding has said so
    return decode_jpeg(list(data.split(sizes.tolist())), mode=ImageReadMode.RGB, device=device)
