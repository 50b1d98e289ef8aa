"""Tiny networks and prepared datasets for the analysis tests (seconds on a laptop CPU)."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import alexnet

CLASSES = ("bright", "dark", "red")


def tiny_alexnet(num_classes: int = 3, **options):
    """The paper's layout (96 conv1 kernels, two towers) with few kernels above conv1, on 67x67 inputs."""
    torch.manual_seed(0)
    settings = dict(num_classes=num_classes, input_size=67, channels=(96, 16, 16, 16, 16), fc_width=32)
    return alexnet.build_model("alexnet", **(settings | options))


def save_run(run_dir: Path, model=None, class_names=CLASSES) -> Path:
    """A run folder holding only ``checkpoints/best.pt``."""
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    alexnet.save_model(model or tiny_alexnet(), run_dir / "checkpoints" / "best.pt", class_names=list(class_names))
    return run_dir


def save_ten_class_run(run_dir: Path) -> Path:
    """A run folder whose network knows 10 classes, none of them the prepared dataset's three."""
    return save_run(run_dir, tiny_alexnet(num_classes=10), [f"class {i}" for i in range(10)])


def prepared_dataset(root: Path, train_per_class: int = 6, val_per_class: int = 2, size: int = 72) -> Path:
    """``alexnet prepare`` over an image folder of three colour classes; returns the prepared folder."""
    from alexnet.data.prepare import prepare

    rng = np.random.default_rng(0)
    colours = {"bright": (220, 220, 220), "dark": (30, 30, 30), "red": (200, 30, 30)}
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name in CLASSES:
            folder = root / "source" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colours[name]) + rng.normal(0, 25, (size + 8, size + 8, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return prepare(root / "source", root / "prepared", size=size, workers=1, progress=False)


def alexnet_command(capsys, *args):
    """Run ``alexnet ARGS...`` in this process (no interpreter start-up): returncode, stdout, stderr."""
    from types import SimpleNamespace

    from alexnet.cli import main

    capsys.readouterr()
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=status, stdout=captured.out, stderr=captured.err)
