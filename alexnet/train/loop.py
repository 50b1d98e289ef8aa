"""The training loop of paper section 5, with metrics, checkpoints, resumption and DDP around it.

:func:`train` reads top to bottom: set up the process, the data and the network; restore a
checkpoint when resuming; then for each epoch its steps (:func:`_train_epoch`, one
:func:`_step` per batch), then validation, one metrics line and the checkpoints
(:func:`_end_epoch`). What the loop uses has a module of its own: the run's state
(``run_state``), metrics (``metrics``), stop signals (``signals``), process settings
(``backends``), the network (``network``), the data (``training_data``) and what it prints
(``messages``). Inside a step nothing waits for the device: the loss and the
top-1/top-5 counts accumulate in device tensors that are read only every ``log_every``
steps, at the end of the epoch and before a checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from alexnet import console
from alexnet.atomic import only_writer
from alexnet.errors import UserError
from alexnet.train import distributed
from alexnet.train.backends import autocast, channels_last, configure_backends, seed_everything
from alexnet.train.checkpoint import read_checkpoint
from alexnet.train.config import TrainConfig, save_config
from alexnet.train.messages import format_record, header, stopped, what_it_learned
from alexnet.train.metrics import DataWait, MetricsLog, Totals, epoch_record
from alexnet.train.network import build_network, prepare_model
from alexnet.train.optim import make_optimizer, set_learning_rate
from alexnet.train.run_state import Run, make_run_folder, save, save_best
from alexnet.train.schedule import make_schedule
from alexnet.train.signals import StopRequest
from alexnet.train.data import dataset_classes, open_data
from alexnet.train.training_data import TrainingData, steps_per_epoch


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def train(config: TrainConfig, resume: bool = False) -> int:
    """Train as ``config`` says; returns the process exit status. ``resume``: continue RUN_DIR's run.

    Process-wide on the CPU, as the command: denormals flushed to zero and freed memory kept for
    reuse (:func:`alexnet.train.backends.configure_backends`)."""
    ctx = distributed.setup(config.device, config.model_parallel)
    # One writer per run folder (issue 23): two runs into one folder mixed their metrics and deleted
    # each other's temporaries. The main process holds it from before it looks for last.pt.
    label = f"{'--resume' if resume else '--out'} {config.out}"
    try:
        with only_writer(Path(config.out), label) if ctx.main else contextlib.nullcontext():
            return _train(config, resume, ctx)
    finally:
        distributed.teardown(ctx)


def _train(config: TrainConfig, resume: bool, ctx: distributed.Context) -> int:
    run_dir = Path(config.out)
    if not resume and (run_dir / "checkpoints" / "last.pt").exists():
        raise UserError(f"--out {run_dir} holds a run already: continue it with `alexnet train --resume "
                        f"{run_dir}`, or choose another --out")
    if config.batch_size % ctx.world:
        raise UserError(f"--batch-size {config.batch_size} (the global batch) must divide evenly "
                        f"across the {ctx.world} processes")
    configure_backends(config, ctx.device)
    seed_everything(config.seed)
    class_names = dataset_classes(config, ctx)
    model = build_network(config, len(class_names), ctx)
    data = open_data(config, ctx, model, len(class_names))
    seed_everything(config.seed + 7919 * ctx.rank)  # dropout differs between processes
    run = Run(config, ctx, prepare_model(model, config, ctx), None, make_schedule(config),
              torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16"), class_names, data.mean)
    run.optimizer = make_optimizer(run.plain_model, config)
    run.totals = Totals.zeros(ctx.device)
    if resume:
        run.restore(read_checkpoint(run_dir / "checkpoints" / "last.pt"))
    steps = steps_per_epoch(data.train_size, config.batch_size, ctx.world)
    if steps == 0:
        raise UserError(f"--batch-size {config.batch_size} is larger than the {data.train_size} "
                        "training images per epoch; lower it or raise --limit")
    logger = None
    if ctx.main:
        make_run_folder(run_dir)
        save_config(config, run_dir / "config.yaml")
        logger = MetricsLog(run_dir, run.epoch)
        print(header(run, data, steps, run_dir, resume), file=sys.stderr)
    try:
        with StopRequest() as stop:
            status = _epochs(run, data, steps, stop, run_dir, logger)
    finally:
        if logger:
            logger.close()
    return status


@dataclass
class Clock:
    """When this process began the epoch's training (or last saved its seconds) and last saved last.pt."""

    began: float
    saved: float


def _epochs(run: Run, data: TrainingData, steps: int, stop: StopRequest, run_dir: Path,
            logger: MetricsLog | None) -> int:
    """Every epoch left: its steps, then validation, one metrics line and the checkpoints; the exit status."""
    first_bad = torch.full((), -1, dtype=torch.int64, device=run.ctx.device)  # global step of a bad loss
    clock = Clock(began=time.monotonic(), saved=time.monotonic())
    run.model.train()
    while run.epoch < run.config.epochs:
        lr, waiting, status = _train_epoch(run, data, steps, stop, run_dir, first_bad, clock)
        if status is not None:
            return status
        _end_epoch(run, data, steps, lr, waiting, clock, run_dir, logger, first_bad)
    if run.ctx.main:
        print(what_it_learned(run_dir, len(run.class_names), run.config.data), file=sys.stderr)
    return 0


def _train_epoch(run: Run, data: TrainingData, steps: int, stop: StopRequest, run_dir: Path,
                 first_bad: torch.Tensor, clock: Clock) -> tuple[float, DataWait, int | None]:
    """The epoch's steps from ``run.position``, saving last.pt every ``--checkpoint-minutes``; the
    last rate, the data-wait clock and, when a stop was requested, the exit status (last.pt saved)."""
    config, ctx, per_step = run.config, run.ctx, run.config.batch_size
    start_step = run.position // per_step
    bar = console.progress(total=steps * per_step, initial=start_step * per_step, unit="img",
                           desc=f"epoch {run.epoch + 1}/{config.epochs}", disable=not ctx.main, leave=False)
    clock.began = time.monotonic()
    lr = run.schedule.lr(run.epoch, 0.0)
    waiting = DataWait(data.train_batches(run.epoch, start_step * per_step))
    for step, batch in enumerate(waiting, start=start_step):
        lr = run.schedule.lr(run.epoch, (step + 1) / steps)
        _step(run, data, batch, lr, first_bad, run.epoch * steps + step)
        run.position = (step + 1) * per_step
        if step == start_step or (step + 1) % config.log_every == 0:  # the first: short epochs too
            check_finite(first_bad, run, steps)
            bar.set_postfix(loss=f"{run.totals.sums[0].item() / max(run.totals.sums[3].item(), 1):.4f}",
                            lr=f"{lr:.2g}")
        bar.update(per_step)
        stopping, due = map(bool, distributed.max_over_ranks(
            ctx, stop.signal is not None, time.monotonic() - clock.saved >= 60 * config.checkpoint_minutes))
        if stopping or (due and step + 1 < steps):
            check_finite(first_bad, run, steps)
            run.seconds += time.monotonic() - clock.began
            clock.began = time.monotonic()
            save(run, run_dir)
            clock.saved = time.monotonic()
        if stopping:
            bar.close()
            if ctx.main:
                print(stopped(stop.signal, step + 1, run.epoch + 1, run_dir), file=sys.stderr)
            return lr, waiting, 128 + (stop.signal or signal.SIGTERM)
    bar.close()
    return lr, waiting, None


def _step(run: Run, data: TrainingData, batch, lr: float, first_bad: torch.Tensor, global_step: int) -> None:
    """One update of section 5 on one batch; the loss and top-1/top-5 counts stay on the device, and
    ``first_bad`` records the first global step whose loss was not finite."""
    set_learning_rate(run.optimizer, lr)
    x = data.to_input(batch, train=True)
    if channels_last(run.config, run.ctx.device):
        x = x.contiguous(memory_format=torch.channels_last)
    labels = batch[1]
    with autocast(run.config, run.ctx.device):
        logits = run.model(x).float()
    loss = F.cross_entropy(logits, labels)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    first_bad.copy_(torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), global_step, first_bad))
    run.totals.add(loss, logits, labels)


def _end_epoch(run: Run, data: TrainingData, steps: int, lr: float, waiting: DataWait, clock: Clock,
               run_dir: Path, logger: MetricsLog | None, first_bad: torch.Tensor) -> None:
    """Validation, the metrics line, the schedule's epoch end, then best.pt and last.pt."""
    check_finite(first_bad, run, steps)
    train_stats = run.totals.summary(run.ctx)
    train_seconds = run.seconds + time.monotonic() - clock.began
    wait_share = waiting.seconds / max(time.monotonic() - waiting.started, 1e-9)
    val_began = time.monotonic()
    val_stats = validate(run, data)
    record = epoch_record(run.epoch + 1, train_stats, val_stats, lr=lr,
                          images_per_s=steps * run.config.batch_size / max(train_seconds, 1e-9),
                          data_wait_share=wait_share, seconds=train_seconds + time.monotonic() - val_began)
    run.schedule.end_epoch(val_stats["top1_error"])
    # best.pt missing while last.pt records a best: lost to a run of before best.pt came first
    improved = val_stats["top1_error"] < run.best_error or not (run_dir / "checkpoints" / "best.pt").exists()
    run.best_error = min(run.best_error, val_stats["top1_error"])
    run.epoch, run.position, run.seconds = run.epoch + 1, 0, 0.0
    run.totals = Totals.zeros(run.ctx.device)
    if run.ctx.main:
        logger.epoch(record)
        print(format_record(record, run.config.epochs), file=sys.stderr)
    # best.pt first: once last.pt records this epoch as done, a resumed run never writes its best.pt
    if improved:
        save_best(run, run_dir)
    save(run, run_dir)
    clock.saved = time.monotonic()


def validate(run: Run, data: TrainingData) -> dict[str, float]:
    """Validation loss and top-1/top-5 error on the centre crops, every image counted once."""
    model = run.model
    model.eval()
    totals = Totals.zeros(run.ctx.device)
    nhwc = channels_last(run.config, run.ctx.device)
    with torch.no_grad(), autocast(run.config, run.ctx.device):
        for batch in data.val_batches():
            x = data.to_input(batch, train=False)
            if nhwc:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            totals.add(F.cross_entropy(logits, batch[1]), logits, batch[1])
    model.train()
    return totals.summary(run.ctx)


def check_finite(first_bad: torch.Tensor, run: Run, steps: int) -> None:
    """Stop when a loss was NaN or infinite on any process, naming the step (read only at log points)."""
    bad = distributed.max_over_ranks(run.ctx, int(first_bad.item()))[0]
    if bad >= 0:
        epoch, step = divmod(bad, steps)
        last = Path(run.config.out) / "checkpoints" / "last.pt"
        kept = f"the last good checkpoint stays: {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLoss(f"the training loss became NaN or infinite at step {step + 1} of epoch "
                            f"{epoch + 1} (global step {bad + 1}); stopping ({kept}). Try a lower --lr, "
                            "or no --amp.")
