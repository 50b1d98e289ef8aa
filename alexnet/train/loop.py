"""The training loop of paper section 5, with metrics, checkpoints, resumption and DDP around it.

One function, :func:`train`, reads top to bottom: set up the process, the data and the
network; restore a checkpoint when resuming; then for each epoch train, validate, log
one metrics line and save. Inside a step nothing waits for the device: the loss and the
top-1/top-5 counts accumulate in device tensors that are read only every ``log_every``
steps, at the end of the epoch and before a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import UserError
from alexnet.registry import build_model
from alexnet.train import distributed, inputs
from alexnet.io import atomic_write_text, remove_temporaries, write_error
from alexnet.model import one_to_two_device_state
from alexnet.modelfile import model_record
from alexnet import console, speed
from alexnet.train.checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from alexnet.train.config import TrainConfig, save_config
from alexnet.train.optim import make_optimizer, set_learning_rate
from alexnet.train.schedule import make_schedule


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def build_network(config: TrainConfig, num_classes: int, ctx: distributed.Context) -> nn.Module:
    """The network to train, from the registry; with ``--model-parallel`` its two towers on this
    process's two devices (section 3.2)."""
    options = {**config.model_options, "num_classes": num_classes}
    return build_model(config.arch, devices=distributed.model_parallel_devices(ctx), **options) \
        if config.model_parallel else build_model(config.arch, **options)


def open_data(config: TrainConfig, ctx: distributed.Context, model: nn.Module,
              num_classes: int) -> inputs.TrainingData:
    """The training and validation batches named by ``--data``, at the network's input size."""
    size, normalization = model.input_size, model.normalization
    if config.data == "synthetic":
        sizes = {k: v for k, v in (("train_size", config.limit), ("val_size", config.val_limit)) if v}
        return inputs.synthetic(num_classes, size, normalization, config.seed, config.batch_size,
                                ctx.rank, ctx.world, ctx.device, **sizes)
    from alexnet.train.prepared import prepared_data

    return prepared_data(config, ctx, size, normalization)


def dataset_classes(config: TrainConfig, ctx: distributed.Context) -> list[str]:
    """The class names of ``--data`` (prepared on first use, once per machine); synthetic data has
    ``num_classes`` (a model option, default 10)."""
    if config.data == "synthetic":
        return [f"class{i}" for i in range(config.model_options.get("num_classes", 10))]
    from alexnet.train.prepared import prepared_classes

    with distributed.local_leader_first(ctx):
        return prepared_classes(config)


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


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves and exits. A second SIGINT
    interrupts at once (the last checkpoint stays). Signals reach only the main thread: elsewhere
    (a notebook's worker thread) nothing is installed."""

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class Run:
    """Everything the loop changes, in one place, so that a checkpoint can hold all of it."""

    config: TrainConfig
    ctx: distributed.Context
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object
    scaler: torch.amp.GradScaler
    class_names: list[str] | None
    mean: np.ndarray | None = None  # the training set's mean image, so that a checkpoint predicts alone
    epoch: int = 0
    position: int = 0
    seconds: float = 0.0  # training time spent in the current epoch before this process
    best_error: float = math.inf
    totals: Totals = None

    @property
    def plain_model(self) -> nn.Module:
        """The network without its DDP or torch.compile wrapping."""
        m = self.model
        m = getattr(m, "module", m)
        return getattr(m, "_orig_mod", m)

    def model_file(self) -> dict:
        """best.pt: what evaluating and predicting need (alexnet.load_model), about half a checkpoint."""
        return model_record(self.plain_model, self.class_names) | {
            "mean": None if self.mean is None else torch.from_numpy(self.mean),
            "epoch": self.epoch, "best_error": self.best_error, "config": self.config.to_dict(),
        }

    def checkpoint(self) -> dict:
        """last.pt: the model file and everything a resumed run continues from."""
        return self.model_file() | {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
            "position": self.position, "rng": rng_states(),
            "progress": {"sums": self.totals.sums.cpu(), "seconds": self.seconds},
        }

    def restore(self, ck: dict) -> None:
        model = self.plain_model
        two_devices = hasattr(model, "one_device_state_dict")
        model.load_state_dict(one_to_two_device_state(ck["model"]) if two_devices else ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.position, self.best_error = ck["epoch"], ck["position"], ck["best_error"]
        self.totals = Totals(ck["progress"]["sums"].to(self.ctx.device))
        self.seconds = ck["progress"]["seconds"]
        set_rng_states(ck["rng"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_backends(config: TrainConfig, device: torch.device) -> None:
    # Denormal floats (below 1e-38, common with the paper's small initial weights) run many times
    # slower on CPUs; flushing them to zero changes nothing measurable and speeds a CPU step ~1.8x.
    torch.set_flush_denormal(True)
    if device.type == "cpu":
        # Every step allocates and frees the same large activations; by default glibc returns
        # them to the system and the next step faults their pages in again, which costs more
        # than the arithmetic of a memory-bound layer: kept, the CPU step is about 1.2x faster
        # (BENCHMARKS.md). The process keeps its peak memory, which every step reaches anyway.
        speed.keep_freed_memory()
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed input size
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic


def channels_last(config: TrainConfig, device: torch.device) -> bool:
    """Whether the run uses channels-last memory: as asked, else where it pays (oneDNN on the CPU,
    cuDNN on CUDA; docs/speed.md). Speed only: the function computed is the same."""
    return config.channels_last if config.channels_last is not None else device.type in ("cpu", "cuda")


def autocast(config: TrainConfig, device: torch.device):
    if config.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if config.amp == "bf16" else torch.float16)


def prepare_model(model: nn.Module, config: TrainConfig, ctx: distributed.Context) -> nn.Module:
    if not config.model_parallel:
        model = model.to(ctx.device)
    # Same function, faster (docs/speed.md): in-place ReLUs, channels-last on request, and on the
    # CPU conv1's weight gradient as a stride-1 convolution (oneDNN's strided one is 4-5x slower).
    model = speed.apply_speed_options(model, channels_last=channels_last(config, ctx.device),
                                conv1_stride1_grad=ctx.device.type == "cpu" and not config.model_parallel)
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" and not config.model_parallel else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        model = torch.compile(model)
    return model


class Logger:
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


def validate(run: Run, data: inputs.TrainingData) -> dict[str, float]:
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


def save(run: Run, run_dir: Path) -> None:
    """checkpoints/last.pt, by the main process."""
    if run.ctx.main:
        save_checkpoint(run_dir / "checkpoints" / "last.pt", run.checkpoint())


def save_best(run: Run, run_dir: Path) -> None:
    """checkpoints/best.pt (weights without the optimiser's state), by the main process."""
    if run.ctx.main:
        save_checkpoint(run_dir / "checkpoints" / "best.pt", run.model_file())


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


def train(config: TrainConfig, resume: bool = False) -> int:
    """Train as ``config`` says; returns the process exit status. ``resume``: continue RUN_DIR's run.

    Process-wide on the CPU, as the command: denormals flushed to zero and freed memory kept for
    reuse (:func:`configure_backends`)."""
    ctx = distributed.setup(config.device, config.model_parallel)
    try:
        return _train(config, resume, ctx)
    finally:
        distributed.teardown(ctx)


def make_run_folder(run_dir: Path) -> None:
    """RUN_DIR and its checkpoints/, without what killed writes left there (half checkpoints)."""
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {run_dir}: cannot make the run folder there ({err.strerror}"
                        f"{': ' + str(err.filename) if err.filename else ''})") from None
    for folder in (run_dir, run_dir / "checkpoints"):
        remove_temporaries(folder)


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
        run.restore(load_checkpoint(run_dir / "checkpoints" / "last.pt"))
    steps = inputs.steps_per_epoch(data.train_size, config.batch_size, ctx.world)
    if steps == 0:
        raise UserError(f"--batch-size {config.batch_size} is larger than the {data.train_size} "
                        "training images per epoch; lower it or raise --limit")
    logger = None
    if ctx.main:
        make_run_folder(run_dir)
        save_config(config, run_dir / "config.yaml")
        logger = Logger(run_dir, run.epoch)
        print(header(run, data, steps, run_dir, resume), file=sys.stderr)
    try:
        with StopRequest() as stop:
            status = _epochs(run, data, steps, stop, run_dir, logger)
    finally:
        if logger:
            logger.close()
    return status


def _epochs(run: Run, data, steps: int, stop: StopRequest, run_dir: Path, logger) -> int:
    config, ctx, model = run.config, run.ctx, run.model
    per_step = config.batch_size
    first_bad = torch.full((), -1, dtype=torch.int64, device=ctx.device)
    nhwc = channels_last(config, ctx.device)
    last_save = time.monotonic()
    model.train()
    while run.epoch < config.epochs:
        start_step = run.position // per_step
        bar = console.progress(total=steps * per_step, initial=start_step * per_step, unit="img",
                               desc=f"epoch {run.epoch + 1}/{config.epochs}", disable=not ctx.main, leave=False)
        began = time.monotonic()
        lr = run.schedule.lr(run.epoch, 0.0)
        waiting = DataWait(data.train_batches(run.epoch, start_step * per_step))
        for step, batch in enumerate(waiting, start=start_step):
            lr = run.schedule.lr(run.epoch, (step + 1) / steps)
            set_learning_rate(run.optimizer, lr)
            x = data.to_input(batch, train=True)
            if nhwc:
                x = x.contiguous(memory_format=torch.channels_last)
            labels = batch[1]
            with autocast(config, ctx.device):
                logits = model(x).float()
            loss = F.cross_entropy(logits, labels)
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            global_step = run.epoch * steps + step
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), global_step, first_bad)
            run.totals.add(loss, logits, labels)
            run.position = (step + 1) * per_step
            if step == start_step or (step + 1) % config.log_every == 0:  # the first: short epochs too
                check_finite(first_bad, run, steps)
                bar.set_postfix(loss=f"{run.totals.sums[0].item() / max(run.totals.sums[3].item(), 1):.4f}",
                                lr=f"{lr:.2g}")
            bar.update(per_step)
            stopping, due = map(bool, distributed.max_over_ranks(
                ctx, stop.signal is not None, time.monotonic() - last_save >= 60 * config.checkpoint_minutes))
            if stopping or (due and step + 1 < steps):
                check_finite(first_bad, run, steps)
                run.seconds += time.monotonic() - began
                began = time.monotonic()
                save(run, run_dir)
                last_save = time.monotonic()
            if stopping:
                bar.close()
                name = signal.Signals(stop.signal).name if stop.signal else "a stop request"
                if ctx.main:
                    print(f"\nstopped by {name} after step {step + 1} of epoch {run.epoch + 1}; saved "
                          f"{run_dir}/checkpoints/last.pt. Resume with:\n"
                          f"    alexnet train --resume {run_dir}", file=sys.stderr)
                return 128 + (stop.signal or signal.SIGTERM)
        bar.close()
        check_finite(first_bad, run, steps)
        train_stats = run.totals.summary(ctx)
        train_seconds = run.seconds + time.monotonic() - began
        wait_share = waiting.seconds / max(time.monotonic() - waiting.started, 1e-9)
        val_began = time.monotonic()
        val_stats = validate(run, data)
        record = {"epoch": run.epoch + 1,
                  **{f"train_{k}": v for k, v in train_stats.items()},
                  **{f"val_{k}": v for k, v in val_stats.items()},
                  "lr": lr, "images_per_s": steps * per_step / max(train_seconds, 1e-9),
                  "data_wait_share": wait_share,
                  "seconds": train_seconds + time.monotonic() - val_began}
        run.schedule.end_epoch(val_stats["top1_error"])
        # best.pt missing while last.pt records a best: lost to a run of before best.pt came first
        improved = val_stats["top1_error"] < run.best_error or not (run_dir / "checkpoints" / "best.pt").exists()
        run.best_error = min(run.best_error, val_stats["top1_error"])
        run.epoch, run.position, run.seconds = run.epoch + 1, 0, 0.0
        run.totals = Totals.zeros(ctx.device)
        if ctx.main:
            logger.epoch(record)
            print(format_record(record, config.epochs), file=sys.stderr)
        # best.pt first: once last.pt records this epoch as done, a resumed run never writes its best.pt
        if improved:
            save_best(run, run_dir)
        save(run, run_dir)
        last_save = time.monotonic()
    if ctx.main:
        print(what_it_learned(run_dir, len(run.class_names), config.data), file=sys.stderr)
    return 0


def header(run: Run, data, steps: int, run_dir: Path, resume: bool) -> str:
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
        lines.append("quick preset (no GPU, or --preset quick): fewer images and epochs than the paper and fc8 "
                     f"at {config.fc8_lr_mult:g} x the rate, to show learning within minutes; --preset full runs "
                     "the paper's recipe")
    return "\n".join(lines)


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


def format_record(r: dict, epochs: int) -> str:
    return (f"epoch {r['epoch']}/{epochs}: train loss {r['train_loss']:.4f} top-1 error "
            f"{r['train_top1_error']:.2f}% top-5 {r['train_top5_error']:.2f}% | val loss {r['val_loss']:.4f} "
            f"top-1 error {r['val_top1_error']:.2f}% top-5 {r['val_top5_error']:.2f}% | lr {r['lr']:.2g} | "
            f"{r['images_per_s']:.0f} images/s, waiting for data {100 * r['data_wait_share']:.0f}% of the "
            f"time | {r['seconds']:.0f} s")
