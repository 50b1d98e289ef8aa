"""Learning-rate schedules. The paper's (section 5) is ``plateau``.

"We used an equal learning rate for all layers ... The heuristic which we followed was to
divide the learning rate by 10 when the validation error rate stopped improving with the
current learning rate. The learning rate was initialized at 0.01 and reduced three times
prior to termination."

Every schedule answers ``lr(epoch, progress)`` (progress: fraction of the epoch done after
the step) and hears ``end_epoch(val_error)``; its state round-trips through
``state_dict``/``load_state_dict`` so that a resumed run continues the same schedule.
"""

from __future__ import annotations

import math

from alexnet.train.config import TrainConfig


class Plateau:
    """Divide by 10 when the validation error has not improved for ``patience`` epochs, at most
    ``max_reductions`` times (the paper: three)."""

    def __init__(self, base_lr: float, patience: int, max_reductions: int = 3):
        self.base_lr, self.patience, self.max_reductions = base_lr, patience, max_reductions
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def lr(self, epoch: int, progress: float) -> float:
        return self.base_lr * 0.1 ** self.reductions

    def end_epoch(self, val_error: float) -> None:
        if val_error < self.best:
            self.best, self.bad_epochs = val_error, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.reductions < self.max_reductions:
            self.reductions += 1
            self.bad_epochs = 0  # the new rate gets its own chance to improve

    def state_dict(self) -> dict:
        return dict(best=self.best, bad_epochs=self.bad_epochs, reductions=self.reductions)

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs, self.reductions = state["best"], state["bad_epochs"], state["reductions"]


class _Stateless:
    """A schedule that is a pure function of the epoch: nothing to remember."""

    def end_epoch(self, val_error: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Step(_Stateless):
    """Divide by 10 every ``every`` epochs (torchvision's reference recipe: every 30)."""

    def __init__(self, base_lr: float, every: int):
        self.base_lr, self.every = base_lr, every

    def lr(self, epoch: int, progress: float) -> float:
        return self.base_lr * 0.1 ** (epoch // self.every)


class CosineWarmup(_Stateless):
    """Linear warm-up over ``warmup`` epochs, then half a cosine down to 0 at the last epoch."""

    def __init__(self, base_lr: float, warmup: float, epochs: int):
        self.base_lr, self.warmup, self.epochs = base_lr, warmup, epochs

    def lr(self, epoch: int, progress: float) -> float:
        t = epoch + progress
        if t < self.warmup:
            return self.base_lr * t / self.warmup
        span = max(self.epochs - self.warmup, 1e-9)
        return 0.5 * self.base_lr * (1 + math.cos(math.pi * min((t - self.warmup) / span, 1.0)))


class Krizhevsky2012(_Stateless):
    """The schedule recorded in the authors' ILSVRC-2012 run (layer-params-120-2012-full.cfg):
    0.01 for epochs 1-23, 0.001 for epochs 24-49, 0.0001 after (scaled by ``base_lr / 0.01``)."""

    BOUNDARIES = (23, 49)

    def __init__(self, base_lr: float):
        self.base_lr = base_lr

    def lr(self, epoch: int, progress: float) -> float:
        return self.base_lr * 0.1 ** sum(epoch >= b for b in self.BOUNDARIES)


def make_schedule(config: TrainConfig):
    if config.schedule == "plateau":
        return Plateau(config.lr, config.patience, config.max_reductions)
    if config.schedule == "step":
        return Step(config.lr, config.step_epochs)
    if config.schedule == "cosine":
        return CosineWarmup(config.lr, config.warmup_epochs, config.epochs)
    return Krizhevsky2012(config.lr)
