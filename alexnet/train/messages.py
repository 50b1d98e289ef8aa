"""What a run prints on standard error: its header, the line after each epoch, the line when
stopped, and the closing summary (docs/training.md, "What a run prints and writes")."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from alexnet import console

if TYPE_CHECKING:
    from alexnet.train.run_state import Run
    from alexnet.train.training_data import TrainingData


def header(run: Run, data: TrainingData, steps: int, run_dir: Path, resume: bool) -> str:
    """What a run is about to do: its data and size, where a resumed run continues, or that it has
    nothing left to train (the closing summary follows)."""
    config = run.config
    if resume and run.epoch >= config.epochs:
        return (f"{run_dir} is finished: all {console.plural(config.epochs, 'epoch')} trained "
                f"(--epochs more than {config.epochs} trains on)")
    lines = [f"training {run.plain_model.arch} on {config.data}: {data.train_size} training and "
             f"{data.val_size} validation images, {len(run.class_names)} classes, "
             f"{console.plural(config.epochs, 'epoch')} of {console.plural(steps, 'step')} at global batch "
             f"{config.batch_size} on {run.ctx.world} x {run.ctx.device}; results in {run_dir}"]
    if resume:
        lines.append(f"resuming from epoch {run.epoch + 1}, step {run.position // config.batch_size + 1} of "
                     f"{steps} ({run_dir}/checkpoints/last.pt)")
    if config.preset == "quick":
        lines.append("quick preset (no GPU, or --preset quick): fewer images and epochs than the paper, rate "
                     f"{config.lr:g} with fc8 at {config.fc8_lr_mult:g} x that, a {config.schedule} schedule, dropout "
                     f"{config.model_options.get('dropout', 0.5):g}"
                     + (f", {config.amp} arithmetic" if config.amp else "")
                     + ", to show learning within minutes; --preset full runs the paper's recipe")
    return "\n".join(lines)


def format_record(r: dict, epochs: int) -> str:
    return (f"epoch {r['epoch']}/{epochs}: train loss {r['train_loss']:.4f} top-1 error "
            f"{r['train_top1_error']:.2f}% top-5 {r['train_top5_error']:.2f}% | val loss {r['val_loss']:.4f} "
            f"top-1 error {r['val_top1_error']:.2f}% top-5 {r['val_top5_error']:.2f}% | lr {r['lr']:.2g} | "
            f"{r['images_per_s']:.0f} images/s, waiting for data {100 * r['data_wait_share']:.0f}% of the "
            f"time | {r['seconds']:.0f} s")


def what_it_learned(run_dir: Path, num_classes: int, data: str) -> str:
    """The closing summary: validation error first and last against chance, and where results are."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0], records[-1]
    best = min(records, key=lambda r: r["val_top1_error"])
    chance = 100 * (1 - 1 / num_classes)
    course = f"{first['val_top1_error']:.1f}% after epoch {first['epoch']}, " if len(records) > 1 else ""
    return (f"\ndone. Validation top-1 error {course}{last['val_top1_error']:.1f}% after epoch "
            f"{last['epoch']} (guessing: {chance:.1f}%); best "
            f"{best['val_top1_error']:.1f}% (top-5 {best['val_top5_error']:.1f}%) at epoch {best['epoch']}.\n"
            f"  checkpoints: {run_dir}/checkpoints/best.pt, last.pt\n"
            f"  per-epoch metrics: {run_dir}/metrics.jsonl; curves: tensorboard --logdir {run_dir}/tensorboard\n"
            + (f"  the paper's ten-crop test: alexnet evaluate {run_dir}/checkpoints/best.pt --data {data}\n"
               if data != "synthetic" else "")
            + f"  predictions: alexnet predict {run_dir}/checkpoints/best.pt IMAGE...")


def stopped(signum: int | None, step: int, epoch: int, run_dir: Path) -> str:
    """The line of a run stopped by a signal after ``step`` of ``epoch`` (both from 1): how to resume."""
    name = signal.Signals(signum).name if signum else "a stop request"
    return (f"\nstopped by {name} after step {step} of epoch {epoch}; saved "
            f"{run_dir}/checkpoints/last.pt. Resume with:\n"
            f"    alexnet train --resume {run_dir}")
