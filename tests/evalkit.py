"""Tiny networks and data for the evaluation and prediction tests (seconds on a laptop CPU)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from alexnet import build_model

TINY = dict(input_size=67, channels=(8, 8, 8, 8, 8), fc_width=16)  # 67: the smallest input pool5 keeps


def tiny_alexnet(num_classes: int, seed: int = 0, **options) -> nn.Module:
    """The paper's network, shrunk, with PyTorch's default initialisation: outputs far from uniform,
    so that rankings do not hinge on rounding. Carries class names ``c0, c1, ...``."""
    torch.manual_seed(seed)
    model = build_model("alexnet", num_classes=num_classes, **(TINY | options))
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
    model.class_names = [f"c{i}" for i in range(num_classes)]
    return model.eval()


class TinyData:
    """The PreparedDataset interface over random images: ``read``, ``extension``, ``[i]``, ``labels``,
    ``classes``, ``mean`` (per pixel, not the images' own mean, so that a wrong window would show)."""

    extension = "npy"

    def __init__(self, n: int, num_classes: int, size: int = 80, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        self.labels = rng.integers(0, num_classes, n).astype(np.int64)
        self.mean = rng.uniform(60, 200, (size, size, 3)).astype(np.float32)
        self.classes = [f"c{i}" for i in range(num_classes)]

    def __len__(self):
        return len(self.labels)

    def read(self, i):
        buffer = io.BytesIO()
        np.save(buffer, self.images[i])
        return buffer.getvalue(), int(self.labels[i])

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def make_prepared(root: Path, classes=("ant", "bee", "cat"), per_class=(3, 2)) -> Path:
    """An image folder of random pictures of varied sizes, prepared by ``alexnet prepare`` at 80x80
    (raw pixels, so that nothing is lost to JPEG) into ``root/prepared``."""
    from alexnet.data.prepare import prepare

    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            folder = root / "images" / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(80, 130, 2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{c}{i}.png")
    return prepare(root / "images", root / "prepared", size=80, encoding="raw", workers=1, progress=False)
