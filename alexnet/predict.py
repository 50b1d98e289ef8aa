"""`alexnet predict`: the most probable classes of images (Figure 4, left), over :func:`alexnet.inference.predict`."""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from alexnet.errors import UserError
from alexnet.inference import load_model, predict


def load_mean(path: str | Path) -> torch.Tensor:
    """A mean image from ``mean.npy`` or a prepared dataset folder holding one, its header checked first."""
    path = Path(path)
    if path.is_dir():
        path = path / "mean.npy"
    if not path.is_file():
        raise UserError(f"--mean {path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"--mean {path}: the file is empty")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(f))
        except ValueError:
            raise UserError(f"--mean {path}: not a .npy file (an array numpy.save wrote, as a prepared "
                            "dataset's mean.npy)") from None
    if dtype.hasobject or dtype.kind not in "fiu":
        raise UserError(f"--mean {path}: holds {dtype} values, not numbers")
    if not (shape == (3,) or (len(shape) == 3 and shape[2] == 3 and shape[0] == shape[1])):
        raise UserError(f"--mean {path}: expected a square HxWx3 mean image or 3 channel means, got shape {shape}")
    try:
        mean = np.load(path, allow_pickle=False)
    except ValueError as err:  # the header was whole, the data is not
        raise UserError(f"--mean {path}: truncated or damaged ({err})") from None
    return torch.from_numpy(mean.astype(np.float32))


def printable(text: str) -> str:
    """``text`` with its control characters (a terminal's escape sequences) written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_predictions(results: list[dict]) -> str:
    """One block per image: its path, then one line per class with its probability in percent."""
    lines = []
    for result in results:
        lines.append(printable(result["image"]))
        for rank, p in enumerate(result["predictions"], 1):
            lines.append(f"  {rank}. {100 * p['probability']:6.2f}%  {printable(p['class'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--top", args.top), ("--max-pixels", args.max_pixels)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, not {value}")
    missing = [image for image in args.images if not Path(image).is_file()]
    if missing:  # before the model is loaded: a typo costs no wait, and no image's answer is lost
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:4])})" if len(missing) > 1 else ""
        raise UserError(f"{missing[0]}: no such image file{more}")
    model = load_model(args.checkpoint)
    mean = load_mean(args.mean) if args.mean else None
    results = predict(model, args.images, crops=args.crops, top=args.top, mean=mean, device=args.device,
                      max_pixels=args.max_pixels)
    print(json.dumps(results, indent=2) if args.json else format_predictions(results))
    return 0
