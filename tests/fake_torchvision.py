"""A stand-in for ``torchvision.io``'s batched ``decode_jpeg`` that decodes with Pillow (libjpeg,
as the loader's workers do), for testing ``decode="device"`` without torchvision or a GPU."""

import io
import sys
import types

import numpy as np
import torch
from PIL import Image


def install(monkeypatch) -> list:
    """Make ``import torchvision.io`` give the stand-in; returns the list its calls are recorded in:
    ``(number of JPEGs, mode, device)``."""
    calls = []

    def decode_jpeg(inputs, mode=None, device="cpu"):
        calls.append((len(inputs), mode, torch.device(device)))
        out = []
        for data in inputs:
            assert data.dtype == torch.uint8 and data.dim() == 1
            with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
                pixels = np.asarray(image.convert("RGB")).copy()
            out.append(torch.from_numpy(pixels).permute(2, 0, 1).to(device))
        return out

    fake_io = types.SimpleNamespace(decode_jpeg=decode_jpeg, ImageReadMode=types.SimpleNamespace(RGB="RGB"))
    fake = types.ModuleType("torchvision")
    fake.io = fake_io
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.io", fake_io)
    return calls
