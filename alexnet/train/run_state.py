"""A run's state (everything the loop changes, what a checkpoint holds) and its run folder:
``checkpoints/last.pt`` to resume from, ``checkpoints/best.pt`` to evaluate and predict with."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.atomic import make_folder, remove_temporaries
from alexnet.model import one_to_two_device_state
from alexnet.modelfile import model_record
from alexnet.train import distributed
from alexnet.train.checkpoint import rng_states, save_checkpoint, set_rng_states
from alexnet.train.config import TrainConfig
from alexnet.train.metrics import Totals


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


def save(run: Run, run_dir: Path) -> None:
    """checkpoints/last.pt, by the main process, with every process's own state: restoring the main
    process's random states into all of them made a resumed distributed run differ (issue 23)."""
    ranks = distributed.gather_to_main(run.ctx, run.own_state()) if run.ctx.distributed else None
    if run.ctx.main:
        save_checkpoint(run_dir / "checkpoints" / "last.pt", run.checkpoint(ranks))


def save_best(run: Run, run_dir: Path) -> None:
    """checkpoints/best.pt (weights without the optimiser's state), by the main process."""
    if run.ctx.main:
        save_checkpoint(run_dir / "checkpoints" / "best.pt", run.model_file())
