"""Figure 1 (section 3.1): ReLU against tanh on CIFAR-10 as its authors ran it (docs/analysis.md: relu-vs-tanh)."""

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.analysis.imageset import ImageSet
from alexnet.analysis.smalltrain import Inputs, RunStore, SmallTrainer
from alexnet.errors import UserError

DEFAULT_LRS = (0.001, 0.003, 0.01, 0.03)  # cuda-convnet's layers-18pct ran epsW 0.001
MAX_EXTENSIONS = 3
PROTOCOLS = {"authors": {"inputs": "raw", "init": "authors", "bias_lr": 2.0},
             "standardised": {"inputs": "standardised", "init": "pytorch", "bias_lr": 1.0}}
AUTHORS_INIT_STD = {"features.0": 1e-4, "features.3": 1e-2, "features.6": 1e-2, "classifier": 1e-2}
INITS = ("authors", "pytorch")


class FourLayerCNN(nn.Module):
    """conv5x5(32)-pool-conv5x5(32)-pool-conv5x5(64)-pool-fc(10): cuda-convnet's ``layers-18pct.cfg`` unregularised,
    pooling counts rounded up (32 -> 16 -> 8 -> 4); ``init="authors"``: ``AUTHORS_INIT_STD``, biases 0."""

    def __init__(self, activation: str = "relu", num_classes: int = 10, init: str = "authors"):
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be relu or tanh, not {activation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, not {init!r}")
        act = nn.ReLU if activation == "relu" else nn.Tanh

        layers = []
        for cin, cout, pool in ((3, 32, nn.MaxPool2d), (32, 32, nn.AvgPool2d), (32, 64, nn.AvgPool2d)):
            layers += [nn.Conv2d(cin, cout, 5, padding=2), act(), pool(3, stride=2, ceil_mode=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(64 * 4 * 4, num_classes)
        for name, std in AUTHORS_INIT_STD.items() if init == "authors" else ():
            nn.init.normal_(self.get_submodule(name).weight, std=std)
            nn.init.zeros_(self.get_submodule(name).bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def crossing(points: list[dict], threshold: float = 25.0) -> dict | None:
    """When ``points``' training error first reaches ``threshold`` percent, interpolated linearly (None: never)."""
    for n, point in enumerate(points):
        if point["train_error"] <= threshold:
            if n == 0:
                return {"epoch": point["epoch"], "seconds": point["seconds"]}
            before = points[n - 1]
            f = (before["train_error"] - threshold) / (before["train_error"] - point["train_error"])
            return {k: before[k] + f * (point[k] - before[k]) for k in ("epoch", "seconds")}
    return None


def protocol_settings(name: str = "authors", **overrides) -> dict:
    """A protocol's settings (``PROTOCOLS``) with any of inputs/init/bias_lr overridden."""
    if name not in PROTOCOLS:
        raise UserError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {name!r}")
    return dict(PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None})


POINT = {"epoch": float, "train_error": float, "seconds": float}
RUN = {"activation": str, "lr": float, "seed": int, "diverged": bool, "epochs": int, "points": [POINT],
       "crossing_25": (None, {"epoch": float, "seconds": float})}  # a run's record (smalltrain.RunStore)


class SmallRun(SmallTrainer):
    """One run of the four-layer net: ``activation`` at rate ``lr``, the protocol's init, inputs and bias rate."""

    def __init__(self, data: ImageSet, activation: str, lr: float, protocol: dict | None = None,
                 batch_size: int = 128, segments: int = 4, seed: int = 0, device="cpu", inputs: Inputs | None = None):
        protocol = protocol or PROTOCOLS["authors"]
        torch.manual_seed(seed)
        model = FourLayerCNN(activation, num_classes=len(data.classes), init=protocol["init"])
        weights = [p for n, p in model.named_parameters() if not n.endswith("bias")]
        biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
        optimizer = torch.optim.SGD([{"params": weights}, {"params": biases, "lr": lr * protocol["bias_lr"]}],
                                    lr=lr, momentum=0.9)
        inputs = inputs or Inputs(data.images, divide=protocol["inputs"] == "standardised")
        super().__init__(model, optimizer, data, inputs, seed=seed, batch_size=batch_size, segments=segments,
                         device=device)
        self.activation, self.lr, self.seed = activation, lr, seed

    def summary(self) -> dict:
        points = [{k: p[k] for k in POINT} for p in self.points]
        return {"activation": self.activation, "lr": self.lr, "seed": self.seed, "diverged": self.diverged,
                "epochs": self.epochs_done, "points": points, "crossing_25": crossing(points)}


def stop_after(after_crossing: float | None):
    """``SmallTrainer.train``'s ``stop``: ``after_crossing`` epochs after the 25% crossing (None: never)."""
    def stop(points: list[dict]) -> bool:
        cross = crossing(points)
        return cross is not None and points[-1]["epoch"] >= cross["epoch"] + after_crossing

    return None if after_crossing is None else stop


def search_lr(data: ImageSet, activation: str, lrs, search_epochs: int, store: RunStore, seed: int = 0,
              segments: int = 4, **run_options):
    """(``activation``'s rate on the grid ``lrs`` grown past an edge winner, its run if trained here, the record)."""
    grid = sorted(set(float(lr) for lr in lrs))
    step = grid[1] / grid[0] if len(grid) > 1 else 3.0
    scores, trained = {}, {}

    def evaluate(lr):
        def train(partial):
            run = trained[lr] = SmallRun(data, activation, lr, seed=seed, segments=segments, **run_options)
            run.train(search_epochs, f"search {activation} lr={lr:g}")
            return run.summary()

        run = store.record(f"search-{activation}-lr{lr:g}-seed{seed}", train)
        last = [p["train_error"] for p in run["points"][-segments:]]
        scores[lr] = math.inf if run["diverged"] or not last else float(np.mean(last))  # diverged: never wins

    for lr in grid:
        evaluate(lr)
    for _ in range(MAX_EXTENSIONS if len(grid) > 1 else 0):
        tried = sorted(scores)
        best = min(tried, key=lambda lr: scores[lr])
        if best == tried[-1] and math.isfinite(scores[best]):
            evaluate(best * step)
        elif best == tried[0]:
            evaluate(best / step)
        else:
            break
    tried = sorted(scores)
    best = min(tried, key=lambda lr: scores[lr])
    return best, trained.get(best), {"seed": seed, "epochs": search_epochs, "chosen": best,
                                     "inside": len(tried) > 2 and tried[0] < best < tried[-1],
                                     "grid": [{"lr": lr, "train_error": scores[lr],
                                               "diverged": not math.isfinite(scores[lr])} for lr in tried]}


def relu_vs_tanh(data: ImageSet, epochs: int, lrs=DEFAULT_LRS, search_epochs: int = 4, seeds=(0, 1),
                 activations=("relu", "tanh"), protocol: dict | None = None, after_crossing: float | None = None,
                 out: Path | None = None, fixed_lrs: dict | None = None, search_seed: int | None = None,
                 **run_options) -> dict:
    """Figure 1's measurement: each activation's rate searched (or ``fixed_lrs``), one run per seed."""
    protocol = protocol or dict(PROTOCOLS["authors"])
    seeds = list(seeds)
    defining = {"protocol": protocol, "images": len(data), "classes": data.classes, "epochs": epochs,
                "search_epochs": search_epochs, "after_crossing": after_crossing,
                "batch_size": run_options.get("batch_size", 128)}
    store = RunStore(out, defining, RUN)
    run_options.setdefault("inputs", Inputs(data.images, divide=protocol["inputs"] == "standardised"))
    run_options["protocol"] = protocol
    data = data.to(run_options.get("device", "cpu"))
    result = {"threshold": 25.0, **defining, "seeds": seeds, "search": {}, "runs": {}}
    for activation in activations:
        carried = None
        if fixed_lrs and activation in fixed_lrs:
            lr = fixed_lrs[activation]
            result["search"][activation] = {"chosen": lr, "fixed": True, "grid": []}
        else:
            lr, carried, result["search"][activation] = search_lr(
                data, activation, lrs, min(search_epochs, epochs), store,
                seed=seeds[0] if search_seed is None else search_seed, **run_options)
        result["runs"][activation] = []
        for seed in seeds:
            def train(partial):
                run = carried if seed == seeds[0] else None  # the search's winner, continued
                if run is None:
                    run = SmallRun(data, activation, lr, seed=seed, **run_options)
                    run.resume(partial)
                run.train(epochs - run.epochs_done, f"{activation} lr={lr:g} seed {seed}", stop_after(after_crossing),
                          partial)
                return run.summary()

            result["runs"][activation].append(store.record(f"run-{activation}-lr{lr:g}-seed{seed}", train))
    if set(activations) >= {"relu", "tanh"}:
        result["speedup"] = speedup(result["runs"]["relu"], result["runs"]["tanh"])
    return result


def speedup(relu_runs: list[dict], tanh_runs: list[dict]) -> dict:
    """How many times sooner ReLU reaches 25% per seed, the mean and range (a lower bound where tanh missed 25%)."""
    per_seed = []
    for relu, tanh in zip(relu_runs, tanh_runs):
        r, t = relu["crossing_25"], tanh["crossing_25"]
        ratio = {"seed": relu["seed"], "epochs": None, "seconds": None, "lower_bound": r is not None and t is None}
        if r is not None:
            t = t or tanh["points"][-1]
            ratio.update(epochs=t["epoch"] / r["epoch"], seconds=t["seconds"] / r["seconds"])
        per_seed.append(ratio)
    found = [p for p in per_seed if p["epochs"] is not None]
    if not found:
        return {"per_seed": per_seed, "epochs": None, "seconds": None, "note": "ReLU did not reach 25% training error"}
    epochs = [p["epochs"] for p in found]
    result = {"per_seed": per_seed, "epochs": float(np.mean(epochs)), "min": min(epochs), "max": max(epochs),
              "seconds": float(np.mean([p["seconds"] for p in found])),
              "lower_bound": any(p["lower_bound"] for p in found)}
    if result["lower_bound"]:
        result["note"] = "tanh did not reach 25% within the budget: ratios are lower bounds"
    return result


def error_axis(ax, errors, epochs: int, threshold: float = 25.0) -> None:
    """Figure 1's axes: the threshold, and training error 0-0.75 raised to show all ``errors`` (percent)."""
    ax.axhline(threshold / 100, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, epochs)
    highest = max(errors, default=0.0) / 100
    top = 0.75 if highest <= 0.75 else min(1.0, math.ceil(highest * 20) / 20)
    ax.set_ylim(0, top)
    if top > 0.75:
        ax.axhline(0.75, color="grey", linestyle="-.", linewidth=0.8, label="top of the paper's axis")


def draw_figure1(result: dict):
    """Figure 1 in the paper's style: ReLU solid, tanh dashed, the first seed bold, the others thin."""
    from alexnet.analysis.drawing import pyplot

    fig, ax = pyplot().subplots(figsize=(5.5, 4))
    for activation, style in (("relu", "-"), ("tanh", "--")):
        for n, run in enumerate(result["runs"].get(activation, [])):
            points = run["points"]
            label = f"{'ReLU' if activation == 'relu' else 'tanh'} (lr {run['lr']:g})" if n == 0 else None
            # a line of one point draws nothing: a dot or a cross, whole at the axis's right edge
            alone = {"marker": "o" if activation == "relu" else "x", "clip_on": False} if len(points) == 1 else {}
            ax.plot([p["epoch"] for p in points], [p["train_error"] / 100 for p in points], style, color="black",
                    linewidth=1.6 if n == 0 else 0.7, alpha=1.0 if n == 0 else 0.6, label=label, **alone)
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Training error rate")
    error_axis(ax, [p["train_error"] for runs in result["runs"].values() for run in runs for p in run["points"]],
               result["epochs"], result["threshold"])
    ax.legend()
    speed = result.get("speedup", {})
    if speed.get("epochs"):
        bound = ">= " if speed.get("lower_bound") else ""
        seeds = len(speed["per_seed"])
        ax.set_title(f"ReLU reaches 25% {bound}{speed['epochs']:.1f}x sooner in epochs "
                     f"({seeds} seed{'s' if seeds > 1 else ''}; paper: ~6x)", fontsize=9)
    fig.tight_layout()
    return fig
