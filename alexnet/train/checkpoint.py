"""A run's state (:class:`Run`), its checkpoints (``weights_only`` loadable, keys: docs/architecture.md; last.pt
also holds ``progress``, the epoch's running sums, and from several processes ``ranks``, each one's ``rng`` and
``sums``), the random states that make a resume exact, and the stop signals that end a run with a checkpoint."""

import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet.atomic import atomic_torch_save
from alexnet.errors import UserError
from alexnet.model import one_to_two_device_state
from alexnet.modelfile import model_record, read_model_file
from alexnet.train import distributed
from alexnet.train.config import TrainConfig
from alexnet.train.data import TrainingData
from alexnet.train.optim import Schedule, make_optimizer, make_schedule

RESUME_KEYS = ("optimizer", "scheduler", "scaler", "epoch", "position", "rng", "best_error", "progress")


class Totals:
    """The epoch's sums on the device (loss x images, top-1/top-5 misses, images), first non-finite step."""

    def __init__(self, device: torch.device, sums: torch.Tensor | None = None):
        self.sums = torch.zeros(4, dtype=torch.float64, device=device) if sums is None else sums.to(device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, step: int = -1) -> None:
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
        n = labels.shape[0]
        self.sums += torch.stack([loss.detach().double() * n, n - hits[:, 0].sum().double(),
                                  n - hits.any(dim=1).sum().double(), loss.new_full((), n, dtype=torch.float64)])
        if step >= 0:
            bad = (self.first_bad < 0) & ~torch.isfinite(loss.detach())
            self.first_bad.copy_(torch.where(bad, step, self.first_bad))

    def summary(self, ctx: distributed.Context) -> dict[str, float]:
        loss, miss1, miss5, n = distributed.all_sum(ctx, self.sums.clone()).tolist()
        n = max(n, 1.0)
        return {"loss": loss / n, "top1_error": 100 * miss1 / n, "top5_error": 100 * miss5 / n}


@dataclass
class Run:
    """Everything the loop changes (the network as trained, section 5's update, progress), for checkpoints."""

    config: TrainConfig
    ctx: distributed.Context
    model: nn.Module
    data: TrainingData
    optimizer: torch.optim.Optimizer = field(init=False)
    schedule: Schedule = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)
    totals: Totals = field(init=False)
    epoch: int = 0
    position: int = 0  # training samples done in the epoch, over all processes
    seconds: float = 0.0  # training time spent in the current epoch before this process
    best_error: float = math.inf
    began: float = field(default_factory=time.monotonic)  # this process began the epoch's training, or saved
    saved: float = field(default_factory=time.monotonic)  # this process last saved last.pt

    def __post_init__(self):
        self.optimizer = make_optimizer(self.plain_model, self.config)
        self.schedule = make_schedule(self.config)
        self.scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=self.config.amp == "fp16")
        self.totals = Totals(self.ctx.device)

    @property
    def folder(self) -> Path:
        return Path(self.config.out)

    @property
    def plain_model(self) -> nn.Module:
        """The network without its DDP or torch.compile wrapping."""
        m = getattr(self.model, "module", self.model)
        return getattr(m, "_orig_mod", m)

    def model_file(self) -> dict:
        """best.pt: what alexnet.load_model needs, about half a checkpoint (no momentum)."""
        mean = None if self.data.mean is None else torch.from_numpy(self.data.mean)
        return model_record(self.plain_model, self.data.class_names) | {
            "mean": mean, "epoch": self.epoch, "best_error": self.best_error, "config": self.config.to_dict()}

    def save(self) -> None:
        """checkpoints/last.pt, by the main process: the model file, what a resume needs, each process's rng, sums."""
        own = {"rng": rng_states(), "sums": self.totals.sums.cpu()}
        ranks = distributed.gather_to_main(self.ctx, own) if self.ctx.distributed else None
        if self.ctx.main:
            atomic_torch_save(self.model_file() | {
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "position": self.position, "rng": own["rng"],
                "progress": {"sums": own["sums"], "seconds": self.seconds}} | ({"ranks": ranks} if ranks else {}),
                self.folder / "checkpoints" / "last.pt")
        self.saved = time.monotonic()

    def save_best(self) -> None:
        """checkpoints/best.pt (no optimiser state), by the main process."""
        if self.ctx.main:
            atomic_torch_save(self.model_file(), self.folder / "checkpoints" / "best.pt")

    def restore(self, ck: dict) -> None:
        """Continue from checkpoint ``ck``, exactly when saved by as many processes (else fresh random states)."""
        two_devices = hasattr(self.plain_model, "one_device_state_dict")
        self.plain_model.load_state_dict(one_to_two_device_state(ck["model"]) if two_devices else ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.position, self.best_error = ck["epoch"], ck["position"], ck["best_error"]
        self.seconds = ck["progress"]["seconds"]
        ranks = ck.get("ranks") or [{"rng": ck["rng"], "sums": ck["progress"]["sums"]}]
        if len(ranks) == self.ctx.world:
            set_rng_states(ranks[self.ctx.rank]["rng"])
            self.totals = Totals(self.ctx.device, ranks[self.ctx.rank]["sums"])
        else:
            sums = sum(r["sums"] for r in ranks) if self.ctx.main else torch.zeros_like(ranks[0]["sums"])
            self.totals = Totals(self.ctx.device, sums)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint in ``path``, read as a model file is and checked to hold what a resume needs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there (a run writes checkpoints/last.pt after its first "
                        "epoch or --checkpoint-minutes)")
    record = read_model_file(path)
    if missing := [key for key in RESUME_KEYS if key not in record]:
        raise UserError(f"{path}: a model file, not a training checkpoint (no {', '.join(missing)}): a run "
                        "resumes from its checkpoints/last.pt")
    return record


def rng_states() -> dict[str, Any]:
    """Every random-number state the run draws from, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                      "gauss": gauss},
            "python": {"version": version, "internal": list(internal), "gauss": py_gauss}}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


class StopRequest:
    """SIGINT and SIGTERM (main thread only) ask the loop to save and stop; a second SIGINT interrupts."""

    signal: int | None = None  # the first stop signal received

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM) if main}
        return self

    def _handle(self, signum, frame):
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
