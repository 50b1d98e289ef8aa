"""Figure 1 (section 3.1) and section 3.3's CIFAR-10 result, measured.

Figure 1: "A four-layer convolutional neural network with ReLUs (solid line) reaches a 25%
training error rate on CIFAR-10 six times faster than an equivalent network with tanh neurons
(dashed line). The learning rates for each network were chosen independently to make
training as fast as possible. No regularization of any kind was employed."

Protocol here (every choice stated):
- the net is ``alexnet.analysis.smallcnn.FourLayerCNN`` (cuda-convnet's layers-18pct layout);
- inputs are the raw RGB values minus the training set's mean image (section 2), divided by
  one global standard deviation so that both activations start in their working range;
- SGD with momentum 0.9, batch 128, no weight decay, dropout or augmentation, PyTorch's default
  initialisation, the same seed (same initial weights and batch order) for every run;
- "training error" is what the paper plots: the error on the training batches as training
  goes, measured over each of ``segments`` equal parts of every epoch (no extra pass);
- the learning-rate search trains each candidate for ``search_epochs`` and keeps the one with
  the lowest training error over the last segment ("as fast as possible"); that run is then
  continued to the full budget, so the search costs no repeated epochs of the winner;
- the 25% crossing is interpolated linearly between the two measurements around it, in epochs
  and in training seconds (``crossing``).
Section 3.3 (``--lrn``): the ReLU net with and without response normalisation after conv1 and
conv2, both trained on the same part of the training images for the same budget, tested on
a held-out part (CIFAR-10's test set is not needed).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from alexnet import console
from alexnet.analysis.imageset import ImageSet
from alexnet.analysis.smallcnn import FourLayerCNN

DEFAULT_LRS = (0.003, 0.01, 0.03, 0.1)  # SGD with momentum 0.9: from slow to the edge of divergence


def crossing(points: list[dict], threshold: float = 25.0) -> dict | None:
    """When a training-error curve first reaches ``threshold`` percent.

    ``points`` are measurements ``{"epoch", "train_error", "seconds"}`` in order. Returns
    ``{"epoch", "seconds"}`` interpolated linearly between the last point above the threshold
    and the first at or below it (the first point itself if it is already below), or None
    when the curve never reaches it.
    """
    for n, point in enumerate(points):
        if point["train_error"] <= threshold:
            if n == 0:
                return {"epoch": point["epoch"], "seconds": point["seconds"]}
            before = points[n - 1]
            f = (before["train_error"] - threshold) / (before["train_error"] - point["train_error"])
            return {k: before[k] + f * (point[k] - before[k]) for k in ("epoch", "seconds")}
    return None


class Standardise:
    """Raw RGB minus the training set's mean image, divided by one global standard deviation."""

    def __init__(self, images: torch.Tensor, chunk: int = 4096):
        total = torch.zeros(images.shape[1:], dtype=torch.float64)
        for start in range(0, len(images), chunk):
            total += images[start : start + chunk].double().sum(dim=0)
        self.mean = (total / len(images)).float()
        squares = sum(float(((images[s : s + chunk].float() - self.mean) ** 2).sum())
                      for s in range(0, len(images), chunk))
        self.std = max(math.sqrt(squares / images.numel()), 1e-6)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return (batch.float() - self.mean.to(batch.device)) / self.std


class SmallRun:
    """One training run of the four-layer net, continued a given number of epochs at a time."""

    def __init__(self, data: ImageSet, activation: str, lr: float, lrn: bool = False,
                 batch_size: int = 128, segments: int = 4, seed: int = 0, device="cpu",
                 standardise: Standardise | None = None):
        torch.manual_seed(seed)
        self.model = FourLayerCNN(activation, lrn, num_classes=len(data.classes)).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.data, self.batch_size, self.segments, self.device = data, batch_size, segments, device
        self.standardise = standardise or Standardise(data.images)
        self.order = torch.Generator().manual_seed(seed)
        self.activation, self.lr, self.lrn = activation, lr, lrn
        self.points: list[dict] = []
        self.epochs_done, self.seconds, self.diverged = 0, 0.0, False

    def train(self, epochs: int, desc: str = "") -> list[dict]:
        """Train ``epochs`` more epochs; append one point per segment to ``self.points``."""
        n = len(self.data)
        batches = math.ceil(n / self.batch_size)
        bounds = np.linspace(0, batches, self.segments + 1).round().astype(int)[1:]
        self.model.train()
        progress = console.progress(total=epochs * batches, desc=desc or f"{self.activation} lr={self.lr:g}",
                                    unit="batch", leave=False)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=self.order)
            wrong = seen = 0
            start = time.perf_counter()
            for b in range(batches):
                idx = perm[b * self.batch_size : (b + 1) * self.batch_size]
                x = self.standardise(self.data.images[idx].to(self.device))
                y = self.data.labels[idx].to(self.device)
                logits = self.model(x)
                loss = nn.functional.cross_entropy(logits, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                wrong += int((logits.argmax(1) != y).sum())
                seen += len(y)
                progress.update()
                if b + 1 in bounds:
                    self.seconds += time.perf_counter() - start
                    start = time.perf_counter()
                    self.points.append({"epoch": self.epochs_done + (b + 1) / batches,
                                        "train_error": 100.0 * wrong / seen,
                                        "seconds": self.seconds})
                    progress.set_postfix(epoch=f"{self.points[-1]['epoch']:.2f}",
                                         train_error=f"{self.points[-1]['train_error']:.1f}%")
                    wrong = seen = 0
            self.epochs_done += 1
            if not math.isfinite(loss.item()):
                self.diverged = True
                break
        progress.close()
        return self.points

    @torch.no_grad()
    def test_error(self, data: ImageSet) -> float:
        """Top-1 error (percent) on ``data``."""
        self.model.eval()
        wrong = 0
        for start in range(0, len(data), 512):
            x = self.standardise(data.images[start : start + 512].to(self.device))
            wrong += int((self.model(x).argmax(1).cpu() != data.labels[start : start + 512]).sum())
        self.model.train()
        return 100.0 * wrong / len(data)

    def summary(self) -> dict:
        return {"activation": self.activation, "lr": self.lr, "lrn": self.lrn, "diverged": self.diverged,
                "epochs": self.epochs_done, "points": self.points, "crossing_25": crossing(self.points)}


def search_lr(data: ImageSet, activation: str, lrs, search_epochs: int, **run_options):
    """Train one run per candidate learning rate; the fastest learner wins (see the module doc).

    Returns (the winning run, continued later; one record per candidate).
    """
    runs = []
    for lr in lrs:
        run = SmallRun(data, activation, lr, **run_options)
        run.train(search_epochs, desc=f"search {activation} lr={lr:g}")
        runs.append(run)
    score = [r.points[-1]["train_error"] if not r.diverged else math.inf for r in runs]
    best = runs[int(np.argmin(score))]
    return best, [{"lr": r.lr, "train_error": s, "diverged": r.diverged} for r, s in zip(runs, score)]


def relu_vs_tanh(data: ImageSet, epochs: int, lrs=DEFAULT_LRS, search_epochs: int = 1,
                 heldout: ImageSet | None = None, **run_options) -> dict:
    """Figure 1's measurement (and section 3.3's with ``heldout``): the numbers as one dict."""
    result = {"threshold": 25.0, "images": len(data), "epochs": epochs, "search_epochs": search_epochs,
              "runs": {}, "search": {}}
    run_options.setdefault("standardise", Standardise(data.images))
    finished = {}
    for activation in ("relu", "tanh"):
        run, tried = search_lr(data, activation, lrs, min(search_epochs, epochs), **run_options)
        run.train(epochs - run.epochs_done, desc=f"{activation} lr={run.lr:g}")
        result["search"][activation] = tried
        result["runs"][activation] = run.summary()
        finished[activation] = run
    relu, tanh = result["runs"]["relu"]["crossing_25"], result["runs"]["tanh"]["crossing_25"]
    result["speedup"] = _speedup(relu, tanh, finished["tanh"])
    if heldout is not None:
        with_lrn = SmallRun(data, "relu", finished["relu"].lr, lrn=True, **run_options)
        with_lrn.train(epochs, desc="relu + LRN")
        result["lrn"] = {"heldout_images": len(heldout), "lr": with_lrn.lr, "epochs": epochs,
                         "test_error_without_lrn": finished["relu"].test_error(heldout),
                         "test_error_with_lrn": with_lrn.test_error(heldout),
                         "paper": {"test_error_without_lrn": 13.0, "test_error_with_lrn": 11.0}}
    return result


def _speedup(relu: dict | None, tanh: dict | None, tanh_run: SmallRun) -> dict:
    """How many times sooner ReLU reaches 25% (a lower bound when tanh never got there)."""
    if relu is None:
        return {"epochs": None, "seconds": None, "note": "ReLU did not reach 25% training error"}
    if tanh is None:
        return {"epochs": tanh_run.epochs_done / relu["epoch"], "seconds": tanh_run.seconds / relu["seconds"],
                "lower_bound": True, "note": "tanh did not reach 25% within the budget: ratios are lower bounds"}
    return {"epochs": tanh["epoch"] / relu["epoch"], "seconds": tanh["seconds"] / relu["seconds"],
            "lower_bound": False}


def draw_figure1(result: dict):
    """Figure 1: training error against epochs, ReLU solid, tanh dashed, 25% dotted."""
    from alexnet.analysis.drawing import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for activation, style in (("relu", "-"), ("tanh", "--")):
        run = result["runs"][activation]
        points = run["points"]
        ax.plot([p["epoch"] for p in points], [p["train_error"] / 100 for p in points], style, color="black",
                label=f"{'ReLU' if activation == 'relu' else 'tanh'} (lr {run['lr']:g})")
    ax.axhline(result["threshold"] / 100, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Training error rate")
    highest = max(p["train_error"] for run in result["runs"].values() for p in run["points"]) / 100
    ax.set_ylim(0, max(0.75, highest + 0.05))  # the paper's axis runs to 0.75
    ax.legend()
    speed = result["speedup"]
    if speed.get("epochs"):
        bound = ">= " if speed.get("lower_bound") else ""
        ax.set_title(f"ReLU reaches 25% {bound}{speed['epochs']:.1f}x sooner in epochs (paper: ~6x)", fontsize=9)
    fig.tight_layout()
    return fig
