"""A run's state and its checkpoints: everything the loop changes (:class:`Run`), the run folder,
``checkpoints/last.pt`` to resume from and ``checkpoints/best.pt`` to evaluate and predict with,
written atomically, the random-number states that make a resume exact, and the stop signals that
end a run with a checkpoint.

A checkpoint is a plain dict of tensors and Python values, so it loads with
``torch.load(path, weights_only=True)``: the keys of a model file (``model``, the state
dict in the one-device layout; ``arch``, ``options``, ``class_names``; so that
``alexnet.load_model`` reads it), then ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (the epoch in
progress, from 0), ``position`` (training samples done in it), ``rng``, ``config``, and
``progress`` (the epoch's running sums, so its metrics line comes out the same), and in a run of
several processes ``ranks`` (each process's ``rng`` and running ``sums``: each draws its own dropout).
A run's ``best.pt`` is a model file only (the first keys, with ``mean``, ``epoch``, ``best_error``
and ``config``): half the size, since the optimiser's momentum is as large as the weights.
"""

from __future__ import annotations

import math
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet.atomic import atomic_torch_save, make_folder, remove_temporaries
from alexnet.errors import UserError
from alexnet.model import one_to_two_device_state
from alexnet.modelfile import model_record, read_model_file
from alexnet.train import distributed
from alexnet.train.config import TrainConfig
from alexnet.train.data import TrainingData
from alexnet.train.optim import Schedule, make_optimizer, make_schedule


class Totals:
    """The epoch's running numbers, kept on the device so that a step reads nothing on the host:
    loss x images, top-1 and top-5 misses, images; and the first global step whose loss was not
    finite (-1: none yet)."""

    def __init__(self, sums: torch.Tensor):
        self.sums = sums
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=sums.device)

    @classmethod
    def zeros(cls, device) -> Totals:
        return cls(torch.zeros(4, dtype=torch.float64, device=device))

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, step: int = -1) -> None:
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices == labels[:, None]
        n = labels.shape[0]
        self.sums += torch.stack([loss.detach().double() * n, n - hits[:, 0].sum().double(),
                                  n - hits.any(dim=1).sum().double(),
                                  torch.full((), n, dtype=torch.float64, device=loss.device)])
        if step >= 0:
            bad = (self.first_bad < 0) & ~torch.isfinite(loss.detach())
            self.first_bad.copy_(torch.where(bad, step, self.first_bad))

    def summary(self, ctx: distributed.Context) -> dict[str, float]:
        loss, miss1, miss5, n = distributed.all_sum(ctx, self.sums.clone()).tolist()
        n = max(n, 1.0)
        return {"loss": loss / n, "top1_error": 100 * miss1 / n, "top5_error": 100 * miss5 / n}


@dataclass
class Run:
    """Everything the loop changes, in one place, so that a checkpoint can hold all of it: the
    network (as trained: wrapped for DDP and compile), the data, and the update of section 5 made
    for them (optimizer, schedule, loss scaler), then the progress."""

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

    def __post_init__(self):
        self.optimizer = make_optimizer(self.plain_model, self.config)
        self.schedule = make_schedule(self.config)
        self.scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=self.config.amp == "fp16")
        self.totals = Totals.zeros(self.ctx.device)

    @property
    def folder(self) -> Path:
        return Path(self.config.out)

    @property
    def plain_model(self) -> nn.Module:
        """The network without its DDP or torch.compile wrapping."""
        m = self.model
        m = getattr(m, "module", m)
        return getattr(m, "_orig_mod", m)

    def model_file(self) -> dict:
        """best.pt: what evaluating and predicting need (alexnet.load_model), about half a checkpoint."""
        mean = self.data.mean
        return model_record(self.plain_model, self.data.class_names) | {
            "mean": None if mean is None else torch.from_numpy(mean),
            "epoch": self.epoch, "best_error": self.best_error, "config": self.config.to_dict(),
        }

    def checkpoint(self, ranks: list[dict] | None = None) -> dict:
        """last.pt: the model file and everything a resumed run continues from; ``ranks``: every
        process's :meth:`own_state` in a distributed run (the main process's is also at the top)."""
        return self.model_file() | {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
            "position": self.position, "rng": rng_states(),
            "progress": {"sums": self.totals.sums.cpu(), "seconds": self.seconds},
        } | ({"ranks": ranks} if ranks else {})

    def own_state(self) -> dict:
        """What differs between data-parallel processes: the random states (each draws its own
        dropout masks) and the epoch's running sums (each counts its own share of the batches)."""
        return {"rng": rng_states(), "sums": self.totals.sums.cpu()}

    def restore(self, ck: dict) -> None:
        """Continue from checkpoint ``ck`` (:func:`read_checkpoint`)."""
        model = self.plain_model
        two_devices = hasattr(model, "one_device_state_dict")
        model.load_state_dict(one_to_two_device_state(ck["model"]) if two_devices else ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.position, self.best_error = ck["epoch"], ck["position"], ck["best_error"]
        self.seconds = ck["progress"]["seconds"]
        mine = _own_state(ck, self.ctx)
        self.totals = Totals(mine["sums"].to(self.ctx.device))
        if mine["rng"] is not None:
            set_rng_states(mine["rng"])


def _own_state(ck: dict, ctx: distributed.Context) -> dict:
    """This process's random states and running sums in ``ck``: its own when the checkpoint was
    saved by as many processes (then the resumed run is exact); with another number of processes
    the saved sums are counted once, by the main process, and each keeps its fresh random states."""
    ranks = ck.get("ranks") or [{"rng": ck["rng"], "sums": ck["progress"]["sums"]}]
    if len(ranks) == ctx.world:
        return ranks[ctx.rank]
    sums = sum(r["sums"] for r in ranks) if ctx.main else torch.zeros_like(ranks[0]["sums"])
    return {"rng": None, "sums": sums}


def make_run_folder(run_dir: Path) -> None:
    """RUN_DIR and its checkpoints/, without what killed writes left there (half checkpoints)."""
    make_folder(run_dir / "checkpoints", f"--out {run_dir}")
    for folder in (run_dir, run_dir / "checkpoints"):
        remove_temporaries(folder)


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically: a kill at any moment leaves the previous checkpoint whole."""
    atomic_torch_save(checkpoint, path)


def save(run: Run) -> None:
    """checkpoints/last.pt, by the main process, with every process's own state: restoring the main
    process's random states into all of them made a resumed distributed run differ (issue 23)."""
    ranks = distributed.gather_to_main(run.ctx, run.own_state()) if run.ctx.distributed else None
    if run.ctx.main:
        save_checkpoint(run.folder / "checkpoints" / "last.pt", run.checkpoint(ranks))


def save_best(run: Run) -> None:
    """checkpoints/best.pt (weights without the optimiser's state), by the main process."""
    if run.ctx.main:
        save_checkpoint(run.folder / "checkpoints" / "best.pt", run.model_file())


RESUME_KEYS = ("optimizer", "scheduler", "scaler", "epoch", "position", "rng", "best_error", "progress")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint in ``path``, read as a model file is (never unpickling code) and checked to
    hold what a resumed run needs; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there (a run writes checkpoints/last.pt after its first "
                        "epoch or --checkpoint-minutes)")
    record = read_model_file(path)
    missing = [key for key in RESUME_KEYS if key not in record]
    if missing:
        raise UserError(f"{path}: a model file, not a training checkpoint (no {', '.join(missing)}): a run "
                        "resumes from its checkpoints/last.pt")
    return record


def rng_states() -> dict[str, Any]:
    """Every random-number state the run draws from, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


class StopRequest:
    """SIGINT and SIGTERM (a cluster's pre-emption) set a flag; the loop finishes its step, saves
    last.pt and exits (docs/training.md). A second SIGINT interrupts at once (the last checkpoint
    stays). Signals reach only the main thread: elsewhere (a notebook's worker thread) nothing is
    installed."""

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
