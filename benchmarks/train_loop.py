"""What the training loop costs over a bare PyTorch step, on the same network and batches.

Ours: ``alexnet.train.loop.train`` on ``--data synthetic`` (one epoch; its images/s, as written
to metrics.jsonl: everything of a step, with the paper's optimizer, device-side input
conversion, running metrics, schedule, stop and save checks). Baseline, in the same run: a bare
loop over the same batch count on the same network (forward, cross-entropy, backward,
torch.optim.SGD step on one pre-made float batch of the same synthetic images), which does
strictly less. Both flush denormal floats to zero, as ``alexnet train`` does on the CPU. The ratio is the
loop's overhead (1.00: none).

    python benchmarks/train_loop.py [--steps 10] [--batch 32] [--input-size 67] [--device cpu]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alexnet import build_model
from alexnet.train.config import TrainConfig
from alexnet.train.data import SyntheticImages
from alexnet.train.loop import train


def bare(options: dict, steps: int, batch: int, device: str) -> float:
    """Images/s of a bare PyTorch training loop."""
    torch.manual_seed(0)
    model = build_model("alexnet", **options).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    size = model.input_size
    images = SyntheticImages(batch, options["num_classes"], size, 0, "train", torch.device(device))
    x, y, _ = images.batch(np.arange(batch))
    x = x.float() - 127.5  # the same images and conversion as --data synthetic
    torch.set_flush_denormal(True)  # as alexnet train does
    began = time.perf_counter()
    for _ in range(steps):  # every step timed, the first included, as the loop's images/s
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return steps * batch / (time.perf_counter() - began)


def ours(options: dict, steps: int, batch: int, device: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(data="synthetic", out=str(Path(tmp) / "run"), epochs=1, batch_size=batch,
                             limit=steps * batch, val_limit=batch, device=device, model_options=options)
        train(config)
        return json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text())["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input-size", type=int, default=67)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    options = {"num_classes": 10, "input_size": a.input_size}
    rows = [("bare PyTorch loop", bare(options, a.steps, a.batch, a.device)),
            ("alexnet train", ours(options, a.steps, a.batch, a.device)),
            ("bare PyTorch loop (again)", bare(options, a.steps, a.batch, a.device))]
    base = (rows[0][1] + rows[2][1]) / 2
    for name, rate in rows:
        print(f"{name:28s} {rate:8.1f} images/s  {rate / base:5.2f}x the bare loop's mean")


if __name__ == "__main__":
    main()
