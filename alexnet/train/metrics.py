"""A run's numbers: the epoch's running totals (on the device), the data-wait clock, and the
per-epoch records in ``metrics.jsonl`` and TensorBoard."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from alexnet.atomic import atomic_write_text, write_error
from alexnet.train import distributed


@dataclass
class Totals:
    """Running sums over an epoch, kept on the device: loss x images, top-1 and top-5 misses, images."""

    sums: torch.Tensor

    @classmethod
    def zeros(cls, device) -> "Totals":
        return cls(torch.zeros(4, dtype=torch.float64, device=device))

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices == labels[:, None]
        n = labels.shape[0]
        self.sums += torch.stack([loss.detach().double() * n, n - hits[:, 0].sum().double(),
                                  n - hits.any(dim=1).sum().double(),
                                  torch.full((), n, dtype=torch.float64, device=loss.device)])

    def summary(self, ctx: distributed.Context) -> dict[str, float]:
        loss, miss1, miss5, n = distributed.all_sum(ctx, self.sums.clone()).tolist()
        n = max(n, 1.0)
        return {"loss": loss / n, "top1_error": 100 * miss1 / n, "top5_error": 100 * miss5 / n}


class DataWait:
    """The batches of an iterable, counting the seconds spent waiting for each (``seconds``) since
    ``started``. A share of the epoch's time above a few percent means the step waits for the
    loader: give it more ``--workers``, or ``--decode device`` on a GPU (docs/training.md)."""

    def __init__(self, batches):
        self.batches, self.seconds, self.started = batches, 0.0, time.monotonic()

    def __iter__(self):
        it = iter(self.batches)
        while True:
            before = time.monotonic()
            batch = next(it, None)
            self.seconds += time.monotonic() - before
            if batch is None:
                return
            yield batch


class MetricsLog:
    """metrics.jsonl and TensorBoard events, written by the main process only."""

    def __init__(self, run_dir: Path, resume_epoch: int):
        self.path = run_dir / "metrics.jsonl"
        # Epochs after the checkpoint will be run again: drop their lines, and their events.
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["epoch"] <= resume_epoch]
            atomic_write_text("".join(line + "\n" for line in kept), self.path)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_epoch + 1)

    def epoch(self, record: dict) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise write_error(self.path, err) from None
        step = record["epoch"]
        for split in ("train", "val"):
            for key in ("loss", "top1_error", "top5_error"):
                self.tb.add_scalar(f"{key}/{split}", record[f"{split}_{key}"], step)
        for key in ("lr", "images_per_s", "data_wait_share"):
            self.tb.add_scalar(key, record[key], step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def epoch_record(epoch: int, train: dict[str, float], val: dict[str, float], **numbers: float) -> dict:
    """One line of metrics.jsonl: ``epoch`` (from 1), the training and validation ``loss``,
    ``top1_error`` and ``top5_error`` (percent), then ``numbers`` (``lr``, ``images_per_s``,
    ``data_wait_share``, ``seconds``) in their order."""
    return {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
            **{f"val_{k}": v for k, v in val.items()}, **numbers}
