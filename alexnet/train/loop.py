"""The training loop of section 5, with validation, metrics, checkpoints, resumption and DDP around it. A step
never waits for the device: its loss and error counts are read every ``log_every`` steps and at checkpoints."""

import contextlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from alexnet import console, speed
from alexnet.atomic import atomic_write_text, make_folder, only_writer, remove_temporaries, write_error
from alexnet.errors import UserError
from alexnet.registry import build_model
from alexnet.train import distributed
from alexnet.train.checkpoint import Run, StopRequest, Totals, read_checkpoint
from alexnet.train.config import TrainConfig
from alexnet.train.data import dataset_classes, prepared_data, synthetic


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def train(config: TrainConfig, resume: str | Path | None = None) -> int:
    """Train as ``config`` says, from checkpoint ``resume``; the exit status. Sets process-wide backend options."""
    # One writer per run folder (issue 23), held from before the main process looks for last.pt.
    label = f"{'--resume' if resume else '--out'} {config.out}"
    with distributed.session(config.device, config.model_parallel) as ctx:
        with only_writer(Path(config.out), label) if ctx.main else contextlib.nullcontext():
            run = _start(config, ctx, resume)
            with StopRequest() as stop, (MetricsLog(run) if ctx.main else contextlib.nullcontext()) as log:
                while run.epoch < config.epochs:
                    waiting = DataWait(run.data.train_batches(run.epoch, run.position))
                    if (status := _train_epoch(run, waiting, stop)) is not None:
                        return status
                    _end_epoch(run, waiting, log)
            if ctx.main:
                print(what_it_learned(run), file=sys.stderr)
            return 0


def _start(config: TrainConfig, ctx: distributed.Context, resume: str | Path | None) -> Run:
    """Settings, seeds, data, network and run (restored from ``resume``); the run folder and config.yaml."""
    run_dir = Path(config.out)
    if resume is None and (run_dir / "checkpoints" / "last.pt").exists():
        raise UserError(f"--out {run_dir} holds a run already: continue it with `alexnet train --resume "
                        f"{run_dir}`, or choose another --out")
    if config.batch_size % ctx.world:
        raise UserError(f"--batch-size {config.batch_size} (the global batch) must divide evenly "
                        f"across the {ctx.world} processes")
    configure_backends(config, ctx.device)
    seed_everything(config.seed)
    class_names = dataset_classes(config, ctx)
    options = {**config.model_options, "num_classes": len(class_names)}
    if config.model_parallel:  # section 3.2: the two towers on this process's two devices
        model = build_model(config.arch, devices=distributed.model_parallel_devices(ctx), **options)
    else:
        model = build_model(config.arch, **options).to(ctx.device)
    data = (synthetic if config.data == "synthetic" else prepared_data)(config, ctx, model, class_names)
    seed_everything(config.seed + 7919 * ctx.rank)  # dropout differs between processes
    # The same function, faster (docs/speed.md), wrapped for DDP and compile.
    model = speed.apply_speed_options(model, channels_last=channels_last(config, ctx.device),
                                      conv1_stride1_grad=ctx.device.type == "cpu" and not config.model_parallel)
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" and not config.model_parallel else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    run = Run(config, ctx, torch.compile(model) if config.compile else model, data)
    if resume is not None:
        run.restore(read_checkpoint(resume))
    if ctx.main:
        make_folder(run_dir / "checkpoints", f"--out {run_dir}")
        for folder in (run_dir, run_dir / "checkpoints"):  # what killed writes left there
            remove_temporaries(folder)
        atomic_write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), run_dir / "config.yaml")
        print(header(run, resume), file=sys.stderr)
    return run


def _train_epoch(run: Run, waiting: "DataWait", stop: StopRequest) -> int | None:
    """The epoch's steps from ``run.position``, saving last.pt as due; on a stop request, the exit status."""
    config, ctx, steps, per_step = run.config, run.ctx, run.data.steps, run.config.batch_size
    start_step = run.position // per_step
    bar = console.progress(total=steps * per_step, initial=start_step * per_step, unit="img",
                           desc=f"epoch {run.epoch + 1}/{config.epochs}", disable=not ctx.main, leave=False)
    run.began = time.monotonic()
    for step, batch in enumerate(waiting, start=start_step):
        lr = run.schedule.set(run.optimizer, run.epoch, (step + 1) / steps)
        _step(run, batch, run.epoch * steps + step)
        run.position = (step + 1) * per_step
        if step == start_step or (step + 1) % config.log_every == 0:  # the first: short epochs too
            check_finite(run)
            bar.set_postfix(loss=f"{run.totals.sums[0].item() / max(run.totals.sums[3].item(), 1):.4f}",
                            lr=f"{lr:.2g}")
        bar.update(per_step)
        stopping, due = map(bool, distributed.max_over_ranks(
            ctx, stop.signal is not None, time.monotonic() - run.saved >= 60 * config.checkpoint_minutes))
        if stopping or (due and step + 1 < steps):
            check_finite(run)
            run.seconds += time.monotonic() - run.began
            run.began = time.monotonic()
            run.save()
        if stopping:
            bar.close()
            if ctx.main:
                name = signal.Signals(stop.signal).name if stop.signal else "a stop request"
                print(f"\nstopped by {name} after step {step + 1} of epoch {run.epoch + 1}; saved {run.folder}/"
                      f"checkpoints/last.pt. Resume with:\n    alexnet train --resume {run.folder}", file=sys.stderr)
            return 128 + (stop.signal or signal.SIGTERM)
    bar.close()


def _step(run: Run, batch, global_step: int) -> None:
    """One update of section 5 on one batch; the loss and top-1/top-5 counts stay on the device."""
    loss, logits = _forward(run, batch, train=True)
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler.is_enabled():  # --amp fp16: loss scaling; the optimizer skips non-finite steps
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    run.totals.add(loss, logits, batch[1], global_step)


def _forward(run: Run, batch, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and float logits of a batch (PCA colour noise only in training)."""
    run.data.transform.train(train)
    x = run.data.transform(batch[0], batch[2])
    x = x.contiguous(memory_format=torch.channels_last) if channels_last(run.config, run.ctx.device) else x
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(run.config.amp)
    with torch.autocast(run.ctx.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
        logits = run.model(x).float()
    return F.cross_entropy(logits, batch[1]), logits


def _end_epoch(run: Run, waiting: "DataWait", log: "MetricsLog | None") -> None:
    """Validation (centre crops, every image once), the metrics line, the schedule's epoch end, best.pt, last.pt."""
    check_finite(run)
    train_stats = run.totals.summary(run.ctx)
    train_seconds = run.seconds + time.monotonic() - run.began
    wait_share = waiting.seconds / max(time.monotonic() - waiting.started, 1e-9)
    val_began = time.monotonic()
    run.model.eval()
    totals = Totals(run.ctx.device)
    with torch.no_grad():
        for batch in run.data.val_batches():
            totals.add(*_forward(run, batch, train=False), batch[1])
    run.model.train()
    val_stats = totals.summary(run.ctx)
    record = {"epoch": run.epoch + 1, **{f"train_{k}": v for k, v in train_stats.items()},
              **{f"val_{k}": v for k, v in val_stats.items()}, "lr": run.schedule.lr(run.epoch, 1.0),
              "images_per_s": run.data.steps * run.config.batch_size / max(train_seconds, 1e-9),
              "data_wait_share": wait_share, "seconds": train_seconds + time.monotonic() - val_began}
    run.schedule.end_epoch(val_stats["top1_error"])
    improved = val_stats["top1_error"] < run.best_error or not (run.folder / "checkpoints" / "best.pt").exists()
    run.best_error = min(run.best_error, val_stats["top1_error"])
    run.epoch, run.position, run.seconds = run.epoch + 1, 0, 0.0
    run.totals = Totals(run.ctx.device)
    if log is not None:
        log.epoch(record)
    # best.pt first: once last.pt records this epoch as done, a resumed run never writes its best.pt
    if improved:
        run.save_best()
    run.save()


def check_finite(run: Run) -> None:
    """Stop when a loss was NaN or infinite on any process, naming the step (read only at log points)."""
    bad = distributed.max_over_ranks(run.ctx, int(run.totals.first_bad.item()))[0]
    if bad >= 0:
        epoch, step = divmod(bad, run.data.steps)
        last = run.folder / "checkpoints" / "last.pt"
        kept = f"the last good checkpoint stays: {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLoss(f"the training loss became NaN or infinite at step {step + 1} of epoch {epoch + 1} "
                            f"(global step {bad + 1}); stopping ({kept}). Try a lower --lr, or no --amp.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_backends(config: TrainConfig, device: torch.device) -> None:
    """Denormals, kept memory, deterministic kernels, cuDNN autotuning, TF32 (docs/speed.md)."""
    torch.set_flush_denormal(True)  # denormals (from the small initial weights) slow a CPU step ~1.8x
    if device.type == "cpu":
        speed.keep_freed_memory()  # else glibc returns each step's activations, to fault them in again: ~1.2x
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if config.deterministic or device.type == "cuda":  # autotune convolutions for the fixed input size
        torch.backends.cudnn.benchmark = not config.deterministic
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic


def channels_last(config: TrainConfig, device: torch.device) -> bool:
    """Whether the run uses channels-last memory: as asked, else where it pays (CPU, CUDA; docs/speed.md)."""
    return config.channels_last if config.channels_last is not None else device.type in ("cpu", "cuda")


class DataWait:
    """The batches of an iterable, counting the ``seconds`` spent waiting for them since ``started``."""

    def __init__(self, batches):
        self.batches, self.seconds, self.started = batches, 0.0, time.monotonic()

    def __iter__(self):
        before = time.monotonic()
        for batch in self.batches:
            self.seconds += time.monotonic() - before
            yield batch
            before = time.monotonic()
        self.seconds += time.monotonic() - before


class MetricsLog(contextlib.AbstractContextManager):
    """metrics.jsonl (one JSON object per epoch, docs/architecture.md), TensorBoard events and the epoch's line."""

    def __init__(self, run: Run):
        self.path, self.epochs = run.folder / "metrics.jsonl", run.config.epochs
        # Epochs after the checkpoint will be run again: drop their lines, and their events.
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["epoch"] <= run.epoch]
            atomic_write_text("".join(line + "\n" for line in kept), self.path)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run.folder / "tensorboard"), purge_step=run.epoch + 1)

    def __exit__(self, *exc):
        self.tb.close()

    def epoch(self, r: dict) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(r) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise write_error(self.path, err) from None
        for split in ("train", "val"):
            for key in ("loss", "top1_error", "top5_error"):
                self.tb.add_scalar(f"{key}/{split}", r[f"{split}_{key}"], r["epoch"])
        for key in ("lr", "images_per_s", "data_wait_share"):
            self.tb.add_scalar(key, r[key], r["epoch"])
        self.tb.flush()
        print(f"epoch {r['epoch']}/{self.epochs}: train loss {r['train_loss']:.4f} top-1 error "
              f"{r['train_top1_error']:.2f}% top-5 {r['train_top5_error']:.2f}% | val loss {r['val_loss']:.4f} "
              f"top-1 error {r['val_top1_error']:.2f}% top-5 {r['val_top5_error']:.2f}% | lr {r['lr']:.2g} | "
              f"{r['images_per_s']:.0f} images/s, waiting for data {100 * r['data_wait_share']:.0f}% of the "
              f"time | {r['seconds']:.0f} s", file=sys.stderr)


def header(run: Run, resume: str | Path | None) -> str:
    """What a run is about to do, where a resumed run continues, or that it has nothing left to train."""
    config, data, run_dir = run.config, run.data, run.folder
    if resume is not None and run.epoch >= config.epochs:
        return (f"{run_dir} is finished: all {console.plural(config.epochs, 'epoch')} trained "
                f"(--epochs more than {config.epochs} trains on)")
    lines = [f"training {run.plain_model.arch} on {config.data}: {data.train_size} training and {data.val_size} "
             f"validation images, {len(data.class_names)} classes, {console.plural(config.epochs, 'epoch')} of "
             f"{console.plural(data.steps, 'step')} at global batch {config.batch_size} on {run.ctx.world} x "
             f"{run.ctx.device}; results in {run_dir}"]
    if resume is not None:
        lines.append(f"resuming from epoch {run.epoch + 1}, step {run.position // config.batch_size + 1} of "
                     f"{data.steps} ({resume})")
    if config.preset == "quick":
        lines.append("quick preset (no GPU, or --preset quick): fewer images and epochs than the paper, rate "
                     f"{config.lr:g} with fc8 at {config.fc8_lr_mult:g} x that, a {config.schedule} schedule, dropout "
                     f"{config.model_options.get('dropout', 0.5):g}"
                     + (f", {config.amp} arithmetic" if config.amp else "")
                     + ", to show learning within minutes; --preset full runs the paper's recipe")
    return "\n".join(lines)


def what_it_learned(run: Run) -> str:
    """The closing summary: validation error first and last against chance, and where the results are."""
    run_dir, data = run.folder, run.config.data
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0], records[-1]
    best = min(records, key=lambda r: r["val_top1_error"])
    chance = 100 * (1 - 1 / len(run.data.class_names))
    course = f"{first['val_top1_error']:.1f}% after epoch {first['epoch']}, " if len(records) > 1 else ""
    return (f"\ndone. Validation top-1 error {course}{last['val_top1_error']:.1f}% after epoch "
            f"{last['epoch']} (guessing: {chance:.1f}%); best "
            f"{best['val_top1_error']:.1f}% (top-5 {best['val_top5_error']:.1f}%) at epoch {best['epoch']}.\n"
            f"  checkpoints: {run_dir}/checkpoints/best.pt, last.pt\n"
            f"  per-epoch metrics: {run_dir}/metrics.jsonl; curves: tensorboard --logdir {run_dir}/tensorboard\n"
            + (f"  the paper's ten-crop test: alexnet evaluate {run_dir}/checkpoints/best.pt --data {data}\n"
               f"  predictions: alexnet predict {run_dir}/checkpoints/best.pt IMAGE..." if data != "synthetic" else
               "  synthetic images: no real test set or mean image to evaluate or predict with; train with "
               "--data PATH or a dataset name for those"))
