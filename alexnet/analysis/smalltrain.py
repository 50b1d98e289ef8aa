"""The one trainer and run store of the CIFAR-10 experiments, which keep only their protocols; the store's
behaviour is in docs/analysis.md ("Run records: one trainer, one store")."""

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet import console
from alexnet.analysis.imageset import ImageSet
from alexnet.atomic import atomic_torch_save, holding_lock, make_folder, read_run_record, write_json
from alexnet.data.transforms import cut_at_windows, view_windows
from alexnet.errors import UserError
from alexnet.modelfile import read_torch_file


def mean_image(images: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The training set's mean image, float32 [3, H, W] on the 0-255 scale."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for start in range(0, len(images), chunk):
        total += images[start : start + chunk].double().sum(dim=0)
    return (total / len(images)).float()


class Inputs:
    """uint8 images minus the training set's mean image (the authors' input), divided by one std if ``divide``."""

    def __init__(self, images: torch.Tensor, divide: bool = False, chunk: int = 4096):
        images = images.cpu()
        self.mean = mean_image(images, chunk)
        self.std = 1.0
        if divide:
            squares = sum(float(((images[s : s + chunk].float() - self.mean) ** 2).sum())
                          for s in range(0, len(images), chunk))
            self.std = max(math.sqrt(squares / images.numel()), 1e-6)

    def __call__(self, images: torch.Tensor, windows: torch.Tensor | None = None, size: int = 0) -> torch.Tensor:
        """``images`` [N, 3, H, W], or with ``windows`` [N, 3] (top, left, flip) their ``size`` crops."""
        self.mean = self.mean.to(images.device)
        if windows is None:
            return (images.float() - self.mean) / self.std
        windows = windows[:, None]
        crops = cut_at_windows(images.permute(0, 2, 3, 1), windows, size)[:, 0].permute(0, 3, 1, 2)
        means = cut_at_windows(self.mean.permute(1, 2, 0), windows, size)[:, 0].permute(0, 3, 1, 2)
        return (crops.float() - means) / self.std


class SmallTrainer:
    """One run of a small net on images held on the device; ``crop``: random windows, mirrored with probability
    1/2 (None: whole images); ``schedule(epoch)``: the factor on every rate; ``points``: per 1/``segments`` epoch."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, data: ImageSet, inputs: Inputs, *,
                 seed: int, batch_size: int = 128, crop: int | None = None, segments: int = 1, device="cpu",
                 schedule=None):
        self.device = torch.device(device)
        self.model, self.optimizer, self.inputs, self.schedule = model.to(self.device), optimizer, inputs, schedule
        self.data, self.batch_size, self.crop, self.segments = data.to(self.device), batch_size, crop, segments
        self.base_rates = [group["lr"] for group in optimizer.param_groups]
        self.order = torch.Generator().manual_seed(seed)  # batch order and crops: the same on every device
        self.points, self.epochs_done, self.seconds, self.diverged = [], 0, 0.0, False

    def train(self, epochs: int, desc: str = "", stop=None, partial: dict | None = None) -> list[dict]:
        """Up to ``epochs`` more epochs (``stop(points)``: ended early), the state saved in ``partial`` after each."""
        n, size = len(self.data), self.batch_size
        batches = math.ceil(n / size)
        bounds = set(np.linspace(0, batches, self.segments + 1).round().astype(int)[1:].tolist())
        bar = console.progress(total=epochs * batches, unit="batch", desc=desc, leave=False)
        self.model.train()
        for epoch in range(epochs):
            factor = self.schedule(self.epochs_done) if self.schedule else 1.0
            for group, rate in zip(self.optimizer.param_groups, self.base_rates):
                group["lr"] = rate * factor
            perm = torch.randperm(n, generator=self.order).to(self.device)
            windows = None
            if self.crop is not None:
                top, left = torch.randint(0, self.data.images.shape[-1] - self.crop + 1, (2, n), generator=self.order)
                flip = torch.randint(0, 2, (n,), generator=self.order)
                windows = torch.stack([top, left, flip], 1).to(self.device)
            sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # summed loss, errors
            seen, start, finite = 0, time.perf_counter(), True
            for b in range(batches):
                idx = perm[b * size : (b + 1) * size]
                logits = self.model(self.inputs(self.data.images[idx], None if windows is None else windows[idx],
                                                self.crop))
                y = self.data.labels[idx]
                loss = nn.functional.cross_entropy(logits, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                sums += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) != y).sum().double()])
                seen += len(y)
                bar.update()
                if b + 1 in bounds:  # read the device's sums only here, not each step
                    self.seconds += time.perf_counter() - start
                    loss_sum, wrong = sums.tolist()
                    finite = finite and math.isfinite(loss_sum)
                    point = {"epoch": self.epochs_done + (b + 1) / batches, "train_error": 100.0 * wrong / seen,
                             "train_loss": loss_sum / seen, "lr": self.optimizer.param_groups[0]["lr"],
                             "seconds": self.seconds}
                    self.points.append(point)
                    bar.set_postfix(epoch=f"{point['epoch']:.2f}", train_error=f"{point['train_error']:.1f}%")
                    sums.zero_()
                    seen, start = 0, time.perf_counter()
            self.epochs_done += 1
            self.diverged = self.diverged or not finite
            if not finite or stop is not None and stop(self.points):
                break
            if partial is not None and epoch + 1 < epochs:
                atomic_torch_save({"run": partial["run"], "model": self.model.state_dict(),
                                   "optimizer": self.optimizer.state_dict(), "order": self.order.get_state(),
                                   "points": self.points, "epochs_done": self.epochs_done, "seconds": self.seconds},
                                  partial["path"])
        bar.close()
        return self.points

    def resume(self, partial: dict | None) -> None:
        """Continue from ``partial``'s saved state when it is there and of the same run."""
        if partial is None or not partial["path"].exists():
            return
        try:
            state = read_torch_file(partial["path"], "run's saved state")
        except UserError as err:
            raise UserError(f"{err}; delete it to start that run over") from None
        if not isinstance(state, dict) or state.get("run") != partial["run"]:
            return  # another run's (other settings): started over, then overwritten
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.order.set_state(state["order"])
        self.points, self.epochs_done, self.seconds = state["points"], state["epochs_done"], state["seconds"]


@torch.no_grad()
def test_errors(model: nn.Module, data: ImageSet, inputs: Inputs, crop: int, device, batch: int = 500) -> dict:
    """Top-1 error (percent) of the ten-view test (section 4.1, the softmax averaged) and of the centre view."""
    model.eval()
    windows = torch.from_numpy(view_windows(tuple(data.images.shape[-2:]), crop, "ten")).to(device)
    wrong_ten = wrong_centre = 0
    for start in range(0, len(data), batch):
        images = data.images[start : start + batch].to(device)
        labels = data.labels[start : start + batch].to(device)
        probs = [model(inputs(images, w.expand(len(images), 3), crop)).softmax(1) for w in windows]
        wrong_ten += int((torch.stack(probs).mean(0).argmax(1) != labels).sum())
        wrong_centre += int((probs[4].argmax(1) != labels).sum())
    model.train()
    return {"ten_view": 100.0 * wrong_ten / len(data), "centre": 100.0 * wrong_centre / len(data)}


KINDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false", dict: "an object",
         list: "a list", None: "null"}


def check_shape(value, shape, where: str = "") -> str | None:
    """What in ``value`` does not fit ``shape`` (None: all does): a type (``float``: any number), None,
    a tuple of alternatives, ``[item shape]`` or a dict of required fields."""
    if isinstance(shape, tuple):
        problems = [check_shape(value, s, where) for s in shape]
        return None if None in problems else problems[-1]
    kind = type(shape) if isinstance(shape, (dict, list)) else shape
    if not (value is None if kind is None else isinstance(value, (int, float) if kind is float else kind)
            and isinstance(value, bool) == (kind is bool)):
        return f"{where or 'the record'}: not {KINDS[kind]}"
    if isinstance(shape, list):
        return next(filter(None, (check_shape(v, shape[0], f"{where}[{n}]") for n, v in enumerate(value))), None)
    for name, field in shape.items() if isinstance(shape, dict) else ():
        if name not in value:
            return f"{where or 'the record'}: no field {name!r}"
        if problem := check_shape(value[name], field, f"{where}.{name}".lstrip(".")):
            return problem
    return None


class RunStore:
    """Runs as ``OUT/runs/<name>.json`` records of the settings ``defining`` and of ``shape`` (None: not stored)."""

    def __init__(self, out: Path | None, defining: dict, shape: dict):
        self.out, self.defining, self.shape = out, defining, shape

    def get(self, name: str) -> dict | None:
        path = self.out / "runs" / f"{name}.json"
        if (record := read_run_record(path)) is None:
            return None
        if problem := check_shape(record, {"defining": dict, "run": self.shape}):
            raise UserError(f"{path}: not a run record ({problem}); delete it to redo that run")
        return record["run"] if record["defining"] == self.defining else None  # other settings: redone

    def record(self, name: str, train) -> dict:
        """Run ``name``'s record: the stored one, else ``train(partial)``'s (``partial``: where its state
        goes after each epoch), stored; a run under way in another process is refused (a lock file)."""
        if self.out is None:
            return train(None)
        if (found := self.get(name)) is not None:
            return found
        lock = self.out / "partial" / f"{name}.lock"
        make_folder(lock.parent, f"--out {self.out}")
        with holding_lock(lock, self.out / "runs" / name):
            found = self.get(name)  # finished by another process meanwhile
            if found is None:
                state = self.out / "partial" / f"{name}.pt"
                found = train({"path": state, "run": {"name": name, "defining": self.defining}})
                write_json(self.out / "runs" / f"{name}.json", {"defining": self.defining, "run": found})
                state.unlink(missing_ok=True)
            lock.unlink()  # safe while held: a process that opened it before finds it gone and retries
            return found
