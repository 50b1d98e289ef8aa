"""Tiny things for training tests: a network registered as ``tiny-test``, a prepared dataset, and
a command line.

``python -m tests.tinynet train --arch tiny-test ...`` is ``alexnet train`` with this network
registered: the same loop, data, checkpoints and signals, at a fraction of the cost.
Environment knobs for the tests: TINY_SLEEP (seconds per training forward, so that a test
can kill a run mid-way), TINY_SIGNAL (``SIGKILL@7``: the process sends itself that signal at its
7th training forward, so that a test kills a run at a known step), TINY_FINAL (a folder where
every process saves its final weights).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch
from torch import nn

from alexnet.registry import list_models, register_model


built: list[nn.Module] = []  # every network built, so that main() can save the final weights


class TinyNet(nn.Module):
    """conv-ReLU-pool-dropout-linear on 16x16 inputs; ``nan_after``: the forward after that many
    training forwards returns NaN (to test the stop on a non-finite loss)."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, nan_after: int = -1):
        super().__init__()
        self.input_size, self.normalization = 16, "mean_image"
        self.options = dict(num_classes=num_classes, dropout=dropout, nan_after=nan_after)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * 4 * 4, num_classes)
        self.forwards = 0
        built.append(self)

    def forward(self, x):
        if self.training:
            self.forwards += 1
            time.sleep(float(os.environ.get("TINY_SLEEP", "0")))
            name, _, at = os.environ.get("TINY_SIGNAL", "").partition("@")
            if name and self.forwards == int(at):
                os.kill(os.getpid(), getattr(signal, name))
        y = self.fc(self.drop(torch.flatten(nn.functional.max_pool2d(torch.relu(self.conv(x / 64)), 2), 1)))
        if self.training and self.forwards == self.options["nan_after"] + 1:
            y = y * float("nan")
        return y


if "tiny-test" not in list_models():
    register_model("tiny-test", TinyNet, "conv-ReLU-pool-dropout-linear on 16x16 inputs (tests only)")


def make_prepared(folder) -> "Path":
    """A prepared dataset of 3 classes of coloured 90x90 images (16 per class for training, 4 for
    validation), stored as 80x80 patches; returns its folder."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from alexnet.data.prepare import prepare

    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("val", 4)):
        for c, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
            images = Path(folder) / "images" / split / f"c{c}"
            images.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.integers(-40, 40, (90, 90, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(images / f"{i}.png")
    return prepare(Path(folder) / "images", Path(folder) / "prepared", size=80, workers=0, progress=False)


def main(argv: list[str]) -> int:
    from alexnet.cli import main as cli_main

    status = cli_main(argv)
    final = os.environ.get("TINY_FINAL")
    if final and built:
        os.makedirs(final, exist_ok=True)
        torch.save(built[-1].state_dict(), os.path.join(final, f"rank{os.environ.get('RANK', '0')}.pt"))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
