"""A network small enough for training tests, and a command line that trains it.

``python -m tests.tinynet train ...`` is ``alexnet train ...`` with this network in place of
the registry's: the same loop, data, checkpoints and signals, at a fraction of the cost.
Environment knobs for the tests: TINY_SLEEP (seconds per training forward, so that a test
can kill a run mid-way), TINY_FINAL (a folder where every process saves its final weights).
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

import alexnet.train.loop as loop


class TinyNet(nn.Module):
    """conv-ReLU-pool-dropout-linear on 16x16 inputs; ``nan_after``: the forward after that many
    training forwards returns NaN (to test the stop on a non-finite loss)."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, nan_after: int = -1):
        super().__init__()
        self.arch, self.input_size, self.normalization = "tiny-test", 16, "mean_image"
        self.options = dict(num_classes=num_classes, dropout=dropout, nan_after=nan_after)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * 4 * 4, num_classes)
        self.forwards = 0

    def forward(self, x):
        if self.training:
            self.forwards += 1
            time.sleep(float(os.environ.get("TINY_SLEEP", "0")))
        y = self.fc(self.drop(torch.flatten(nn.functional.max_pool2d(torch.relu(self.conv(x / 64)), 2), 1)))
        if self.training and self.forwards == self.options["nan_after"] + 1:
            y = y * float("nan")
        return y


built: list[TinyNet] = []


def build_tiny(config, num_classes: int) -> TinyNet:
    options = {k: v for k, v in config.model_options.items() if k != "num_classes"}
    built.append(TinyNet(num_classes, **options))
    return built[-1]


def main(argv: list[str]) -> int:
    loop.build_network = build_tiny
    from alexnet.cli import main as cli_main

    status = cli_main(argv)
    final = os.environ.get("TINY_FINAL")
    if final and built:
        os.makedirs(final, exist_ok=True)
        torch.save(built[-1].state_dict(), os.path.join(final, f"rank{os.environ.get('RANK', '0')}.pt"))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
