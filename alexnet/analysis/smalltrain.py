"""One trainer for the small CIFAR-10 nets of the experiments, Figure 1 and its sweep
(:mod:`alexnet.analysis.figure1`) and section 3.3 (:mod:`alexnet.analysis.lrn_cifar`), each of
which keeps only its protocol (net, initialisation, rates, what it reports):

- :class:`SmallTrainer`: the uint8 images stay in memory on the device; each step gathers its
  batch there, cut at its crop windows and mirrored where flipped (the loader's gather,
  :func:`alexnet.data.transforms.cut_at_windows`), minus the mean image cut at the same windows
  (:class:`Inputs`). Batch order and crops come from one CPU generator per run, drawn once an
  epoch: the same run on every device. Errors and losses are summed on the device and read
  ``segments`` times an epoch, not each step;
- :func:`test_errors`: the ten-view test (:func:`alexnet.data.transforms.view_windows`, the ten
  crops of ``alexnet evaluate``);
- :class:`RunStore`: each finished run is one JSON record ``OUT/runs/<name>.json`` holding the
  settings that define it; a run under way saves its state to ``OUT/partial/<name>.pt`` after
  every epoch and continues from there when run again.

The store's one behaviour (docs/analysis.md): no record: the run is trained; a record of the same
settings: reused; a record of other settings under the same name: trained again and replaced; a
run under way in another process: refused with that process's id (one writer per run); a
file that is not a whole record (not JSON, too large, a field missing or of the wrong type) or a
saved state that cannot be read: the experiment stops with the file's name and what is wrong, and
the file is kept (delete it to redo that run).
"""

from __future__ import annotations

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
    """Raw uint8 images as a net's input: minus the training set's mean image, divided by one
    global std when ``divide`` (else only centred, as the authors fed their nets)."""

    def __init__(self, images: torch.Tensor, divide: bool = False, chunk: int = 4096):
        images = images.cpu()
        self.mean = mean_image(images, chunk)
        self.std = 1.0
        if divide:
            squares = sum(float(((images[s : s + chunk].float() - self.mean) ** 2).sum())
                          for s in range(0, len(images), chunk))
            self.std = max(math.sqrt(squares / images.numel()), 1e-6)

    def __call__(self, images: torch.Tensor, windows: torch.Tensor | None = None, size: int = 0) -> torch.Tensor:
        """``images`` uint8 [N, 3, H, W]; with ``windows`` [N, 3] (top, left, flipped), their
        ``size`` x ``size`` crops, the mean image cut at the same windows."""
        if self.mean.device != images.device:
            self.mean = self.mean.to(images.device)
        if windows is None:
            return (images.float() - self.mean) / self.std
        windows = windows[:, None]
        crops = cut_at_windows(images.permute(0, 2, 3, 1), windows, size)[:, 0].permute(0, 3, 1, 2)
        means = cut_at_windows(self.mean.permute(1, 2, 0), windows, size)[:, 0].permute(0, 3, 1, 2)
        return (crops.float() - means) / self.std


class SmallTrainer:
    """One training run of a small net on in-memory images, continued a number of epochs at a time.

    ``crop``: train on random ``crop`` x ``crop`` windows, mirrored with probability 1/2 (None: the
    whole images). ``points``: one ``{"epoch", "train_error", "train_loss", "lr", "seconds"}`` per
    segment of an epoch (``lr``: the first group's rate; ``seconds``: training time so far).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, data: ImageSet, inputs: Inputs, *,
                 seed: int, batch_size: int = 128, crop: int | None = None, segments: int = 1, device="cpu",
                 schedule=None):
        self.device = torch.device(device)
        self.model, self.optimizer, self.inputs, self.schedule = model.to(self.device), optimizer, inputs, schedule
        self.data = data.to(self.device)
        self.batch_size, self.crop, self.segments = batch_size, crop, segments
        self.base_rates = [group["lr"] for group in optimizer.param_groups]
        self.order = torch.Generator().manual_seed(seed)  # batch order and crops: the same on every device
        self.points: list[dict] = []
        self.epochs_done, self.seconds, self.diverged = 0, 0.0, False

    def _windows(self, n: int) -> torch.Tensor | None:
        if self.crop is None:
            return None
        top, left = torch.randint(0, self.data.images.shape[-1] - self.crop + 1, (2, n), generator=self.order)
        flip = torch.randint(0, 2, (n,), generator=self.order)
        return torch.stack([top, left, flip], 1).to(self.device)

    def train(self, epochs: int, desc: str = "", stop=None, partial: dict | None = None) -> list[dict]:
        """Train up to ``epochs`` more epochs; ``stop(points)`` after each ends the run early;
        ``partial`` (:meth:`RunStore.partial`): the state saved after every epoch but the last."""
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
            windows = self._windows(n)
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
            wrong = torch.zeros((), dtype=torch.int64, device=self.device)
            seen, start, finite = 0, time.perf_counter(), True
            for b in range(batches):
                idx = perm[b * size : (b + 1) * size]
                x = self.inputs(self.data.images[idx], None if windows is None else windows[idx], self.crop)
                y = self.data.labels[idx]
                logits = self.model(x)
                loss = nn.functional.cross_entropy(logits, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_sum += loss.detach().double() * len(y)
                wrong += (logits.argmax(1) != y).sum()
                seen += len(y)
                bar.update()
                if b + 1 in bounds:
                    self.seconds += time.perf_counter() - start
                    finite = finite and math.isfinite(float(loss_sum))
                    self.points.append({"epoch": self.epochs_done + (b + 1) / batches,
                                        "train_error": 100.0 * int(wrong) / seen, "train_loss": float(loss_sum) / seen,
                                        "lr": self.optimizer.param_groups[0]["lr"], "seconds": self.seconds})
                    bar.set_postfix(epoch=f"{self.points[-1]['epoch']:.2f}",
                                    train_error=f"{self.points[-1]['train_error']:.1f}%")
                    loss_sum.zero_()
                    wrong.zero_()
                    seen, start = 0, time.perf_counter()
            self.epochs_done += 1
            if not finite:
                self.diverged = True
                break
            if stop is not None and stop(self.points):
                break
            if partial is not None and epoch + 1 < epochs:
                atomic_torch_save({"run": partial["run"], **self.state()}, partial["path"])
        bar.close()
        return self.points

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "order": self.order.get_state(), "points": self.points, "epochs_done": self.epochs_done,
                "seconds": self.seconds}

    def resume(self, partial: dict | None) -> None:
        """Continue from ``partial``'s saved state when it is there and of the same run."""
        path = partial and partial["path"]
        if path is None or not path.exists():
            return
        try:
            state = read_torch_file(path, "run's saved state")
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
    """Top-1 error (percent) of the ten-view test (softmax averaged over the four corner and the
    centre crops and their mirrors) and of the centre view alone."""
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


KINDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false", dict: "an object"}


def check_shape(value, shape, where: str = "") -> str | None:
    """What in ``value`` does not fit ``shape``, None when all does. A shape is a type (``float``
    takes any number; only ``bool`` takes a bool), None, a tuple of alternatives, ``[item shape]``
    or a dict of required fields."""
    if isinstance(shape, tuple):
        problems = [check_shape(value, s, where) for s in shape]
        return None if None in problems else problems[-1]
    if isinstance(shape, dict) and isinstance(value, dict):
        for name, field in shape.items():
            inner = f"{where}.{name}".lstrip(".")
            if problem := (check_shape(value[name], field, inner) if name in value else f"{where or 'the record'}: "
                           f"no field {name!r}"):
                return problem
        return None
    if isinstance(shape, list) and isinstance(value, list):
        return next(filter(None, (check_shape(v, shape[0], f"{where}[{n}]") for n, v in enumerate(value))), None)
    if shape is None or isinstance(shape, (dict, list)):
        kind = {None: "null", dict: "an object", list: "a list"}[shape if shape is None else type(shape)]
        return None if value is None and shape is None else f"{where or 'the record'}: not {kind}"
    if isinstance(value, (int, float) if shape is float else shape) and (shape is bool or not isinstance(value, bool)):
        return None
    return f"{where}: not {KINDS[shape]}"


class RunStore:
    """Finished runs as JSON records in ``OUT/runs``, partial runs in ``OUT/partial`` (the module
    doc); ``defining``: the settings a record must hold to be reused; ``shape``: what a run's
    record holds (:func:`check_shape`). ``out=None``: nothing is stored."""

    def __init__(self, out: Path | None, defining: dict, shape: dict):
        self.out, self.defining, self.shape = out, defining, shape

    def get(self, name: str) -> dict | None:
        if self.out is None:
            return None
        path = self.out / "runs" / f"{name}.json"
        record = read_run_record(path)
        problem = check_shape(record, {"defining": dict, "run": self.shape}) if record is not None else None
        if problem:
            raise UserError(f"{path}: not a run record ({problem}); delete it to redo that run")
        if record is None or record["defining"] != self.defining:
            return None  # a run of other settings (data, protocol, budget): redone, then replaced
        return record["run"]

    def record(self, name: str, train) -> dict:
        """Run ``name``'s record: the stored one, else ``train(partial)``'s (:meth:`partial`), stored.
        While a process trains a run it holds the run (an ``flock`` on ``OUT/partial/<name>.lock``):
        processes that share OUT (``--sweep``, ``--variants``) each train their own runs, and one that
        asks for a run under way elsewhere is refused with the holder's process id."""
        found = self.get(name)
        if found is not None or self.out is None:
            return found if found is not None else train(None)
        lock = self.out / "partial" / f"{name}.lock"
        make_folder(lock.parent, f"--out {self.out}")
        with holding_lock(lock, self.out / "runs" / name):
            found = self.get(name)  # finished by another process meanwhile
            found = found if found is not None else self.put(name, train(self.partial(name)))
            lock.unlink()  # safe while held: a process that opened it before finds it gone and retries
            return found

    def put(self, name: str, run: dict) -> dict:
        if self.out is not None:
            write_json(self.out / "runs" / f"{name}.json", {"defining": self.defining, "run": run})
            (self.out / "partial" / f"{name}.pt").unlink(missing_ok=True)
        return run

    def partial(self, name: str) -> dict | None:
        """Where run ``name`` keeps its state between epochs, and what it must match."""
        if self.out is None:
            return None
        return {"path": self.out / "partial" / f"{name}.pt", "run": {"name": name, "defining": self.defining}}
