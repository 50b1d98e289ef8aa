"""Fixtures shared by the test files; the helpers they build on are in ``tests/kit.py``."""

import io
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from tests import kit


@pytest.fixture
def tiny_net():
    """``tiny-test`` (``kit.TinyNet``) in the model registry, as ``python -m tests.kit`` has it;
    returns the class."""
    kit.register_tiny_net()
    return kit.TinyNet


@pytest.fixture
def fake_torchvision(monkeypatch) -> list:
    """``import torchvision.io`` gives a stand-in whose batched ``decode_jpeg`` decodes with Pillow
    (libjpeg, as the loader's workers do), for testing ``decode="device"`` without torchvision or a
    GPU; returns the list its calls are recorded in: ``(number of JPEGs, mode, device)``."""
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
