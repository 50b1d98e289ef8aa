"""The update rule of section 5, its parameter groups, and the learning-rate schedules. With epsilon the
learning rate and <dL/dw> the batch gradient:

    v <- 0.9 * v - 0.0005 * epsilon * w - epsilon * <dL/dw>
    w <- w + v

The velocity is in weight units, so a new rate acts only on new gradients (``torch.optim.SGD`` rescales
its whole velocity). The rate lives in the schedule: :meth:`Schedule.set` writes it before every step."""

import math

import torch
from torch import nn

from alexnet.train.config import TrainConfig


@torch.no_grad()
def paper_sgd_step_(weights: list[torch.Tensor], grads: list[torch.Tensor], velocities: list[torch.Tensor],
                    lr: float, momentum: float = 0.9, weight_decay: float = 0.0005) -> None:
    """The update rule on all tensors at once, in place, with foreach kernels (a per-tensor loop's arithmetic)."""
    torch._foreach_mul_(velocities, momentum)
    torch._foreach_add_(velocities, weights, alpha=-weight_decay * lr)
    torch._foreach_add_(velocities, grads, alpha=-lr)
    torch._foreach_add_(weights, velocities)


class PaperSGD(torch.optim.Optimizer):
    """Section 5's update rule (module docstring); under float16 loss scaling, skips non-finite steps on the device."""

    _step_supports_amp_scaling = True  # GradScaler sets self.grad_scale and self.found_inf

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0005):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        for group in self.param_groups:
            weights = [w for w in group["params"] if w.grad is not None]
            for w in weights:
                if "velocity" not in self.state[w]:
                    self.state[w]["velocity"] = torch.zeros_like(w, memory_format=torch.preserve_format)
            if not weights:
                continue
            grads, velocities = [w.grad for w in weights], [self.state[w]["velocity"] for w in weights]
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            if grad_scale is None and found_inf is None:  # all tensors at once (foreach), same arithmetic
                paper_sgd_step_(weights, grads, velocities, lr, momentum, weight_decay)
                continue
            # Loss-scaled: unscale in place as GradScaler.unscale_ does, and skip where found_inf, per tensor.
            inverse = None if grad_scale is None else grad_scale.double().reciprocal().float()
            skip = torch.zeros((), dtype=torch.bool) if found_inf is None else found_inf.bool()
            for w, g, v in zip(weights, grads, velocities):
                if inverse is not None:
                    g.mul_(inverse.to(g.device))
                skip_here = skip.to(w.device, non_blocking=True)
                new = v.mul(momentum).add_(w, alpha=-weight_decay * lr).add_(g, alpha=-lr)
                v.copy_(torch.where(skip_here, v, new))
                w.add_(torch.where(skip_here, torch.zeros_like(v), v))
        return loss


def fast_sgd(params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0005,
             device: torch.device | str = "cpu") -> torch.optim.SGD:
    """``torch.optim.SGD`` (``--optimizer torch-sgd``), fused where supported (CPU, CUDA), else foreach."""
    params = list(params)  # a generator would be used up by the first try
    try:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               fused=torch.device(device).type in ("cpu", "cuda"))
    except RuntimeError:  # fused unsupported for this device or dtype
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """The parameters grouped by ``lr_mult`` (biases', the last ``nn.Linear``'s) and weight decay."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    output_layer = {id(p) for m in last for p in m.parameters()}
    bias_decay = 0.0 if config.bias_no_decay else config.weight_decay
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_bias = name.endswith("bias")
        mult = (config.bias_lr_mult if is_bias else 1.0) * (config.fc8_lr_mult if id(p) in output_layer else 1.0)
        groups.setdefault((mult, bias_decay if is_bias else config.weight_decay), []).append(p)
    return [dict(params=params, lr_mult=mult, weight_decay=decay) for (mult, decay), params in groups.items()]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``--optimizer`` over :func:`parameter_groups`, at rate 0 until :meth:`Schedule.set`."""
    groups = parameter_groups(model, config)
    hyper = dict(lr=0.0, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "paper":
        return PaperSGD(groups, **hyper)
    devices = {p.device for g in groups for p in g["params"]}
    if len(devices) > 1:  # the two towers on two devices: no single fused kernel
        return torch.optim.SGD(groups, **hyper)
    return fast_sgd(groups, **hyper, device=devices.pop())


class Schedule:
    """A learning-rate schedule (this base: constant): ``lr(epoch, progress)`` (the fraction of the epoch done
    after the step), told ``end_epoch(val_error)``; the attributes in ``STATE`` go into checkpoints."""

    STATE: tuple[str, ...] = ()

    def __init__(self, base_lr: float):
        self.base_lr = base_lr

    def lr(self, epoch: int, progress: float) -> float:
        return self.base_lr

    def set(self, optimizer: torch.optim.Optimizer, epoch: int, progress: float) -> float:
        """Set every group's rate (times its ``lr_mult``) for the step that ends at ``progress`` of ``epoch``."""
        lr = self.lr(epoch, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def end_epoch(self, val_error: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for k in self.STATE:
            setattr(self, k, state[k])


class Plateau(Schedule):
    """The paper's: "divide the learning rate by 10 when the validation error rate stopped improving",
    after ``patience`` epochs, at most ``max_reductions`` times ("reduced three times")."""

    STATE = ("best", "bad_epochs", "reductions")

    def __init__(self, base_lr: float, patience: int, max_reductions: int = 3):
        super().__init__(base_lr)
        self.patience, self.max_reductions = patience, max_reductions
        self.best, self.bad_epochs, self.reductions = math.inf, 0, 0

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


class Step(Schedule):
    """Divide by 10 every ``every`` epochs (torchvision's reference recipe: every 30)."""

    def __init__(self, base_lr: float, every: int):
        super().__init__(base_lr)
        self.every = every

    def lr(self, epoch: int, progress: float) -> float:
        return self.base_lr * 0.1 ** (epoch // self.every)


class CosineWarmup(Schedule):
    """Linear warm-up over ``warmup`` epochs, then half a cosine down to 0 at the last epoch."""

    def __init__(self, base_lr: float, warmup: float, epochs: int):
        super().__init__(base_lr)
        self.warmup, self.epochs = warmup, epochs

    def lr(self, epoch: int, progress: float) -> float:
        t = epoch + progress
        if t < self.warmup:
            return self.base_lr * t / self.warmup
        span = max(self.epochs - self.warmup, 1e-9)
        return 0.5 * self.base_lr * (1 + math.cos(math.pi * min((t - self.warmup) / span, 1.0)))


class Krizhevsky2012(Schedule):
    """The authors' recorded 2012 run (layer-params-120-2012-full.cfg): x0.1 after epochs 23 and 49."""

    BOUNDARIES = (23, 49)

    def lr(self, epoch: int, progress: float) -> float:
        return self.base_lr * 0.1 ** sum(epoch >= b for b in self.BOUNDARIES)


def make_schedule(config: TrainConfig) -> Schedule:
    """``--schedule`` from ``--lr``: the one place the learning rate is read."""
    schedules = {"plateau": lambda: Plateau(config.lr, config.patience, config.max_reductions),
                 "step": lambda: Step(config.lr, config.step_epochs),
                 "cosine": lambda: CosineWarmup(config.lr, config.warmup_epochs, config.epochs),
                 "krizhevsky2012": lambda: Krizhevsky2012(config.lr)}
    return schedules[config.schedule]()
