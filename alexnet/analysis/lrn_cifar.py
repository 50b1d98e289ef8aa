"""Section 3.3 on CIFAR-10: test error without and with response normalisation, as the authors ran it."""

import hashlib
import statistics
from pathlib import Path

import torch
from torch import nn

from alexnet import console
from alexnet.analysis.imageset import ImageSet
from alexnet.analysis.localconn import LocallyConnected2d
from alexnet.analysis.smalltrain import Inputs, RunStore, SmallTrainer, test_errors
from alexnet.atomic import atomic_write_text, save_figure, write_json
from alexnet.defaults import LRN_ANNEAL, LRN_EPOCHS, LRN_LR
from alexnet.lrn import LocalResponseNorm

PAPER = {"without": 13.0, "with": 11.0}  # section 3.3, test error (percent)
PAPER_EPOCHS = {"without": LRN_EPOCHS, "with": 500}  # about: cuda-convnet's 13pct and 11pct methodology
BATCH_SIZE = 128
ANNEAL = LRN_ANNEAL
RECORD_VERSION = 3  # 2: the anneal epochs in the key; 3: records of alexnet.analysis.smalltrain.RunStore
CROP = 24  # cuda-convnet's cifar-cropped provider, --crop-border=4: 24x24 crops of the 32x32 images
INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "local3": 0.04, "local4": 0.04, "fc10": 0.01}  # layers-*.cfg initW
WEIGHT_DECAY = {"conv1": 0.0, "conv2": 0.0, "local3": 0.004, "local4": 0.004, "fc10": 0.004}  # layer-params wc
LR = LRN_LR
BIAS_LR_FACTOR = 2.0  # layer-params epsB = 0.002 = 2 x epsW
MOMENTUM = 0.9  # layer-params momW, momB
NORM = {"size": 5, "alpha": 0.001, "beta": 0.75, "k": 1.0, "scaling": "code"}  # layers-conv-local-11pct rnorm1/2
VARIANTS = ("without", "with")  # response normalisation: the 13pct net, the (first) 11pct net
VIEWS = ("ten_view", "centre")  # the test's views (smalltrain.test_errors)


class ConvLocalNet(nn.Module):
    """conv-[norm]-pool-conv-[norm]-pool-local-local-fc on 24x24 crops: cuda-convnet's ``layers-conv-local-13pct``
    and (``norm``) the first ``-11pct`` net, pooling counts rounded up (24 -> 12 -> 6), cross-map ``NORM``."""

    def __init__(self, norm: bool = False, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 5, padding=2)
        self.norm1 = LocalResponseNorm(**NORM) if norm else nn.Identity()
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 24 -> 12
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)
        self.norm2 = LocalResponseNorm(**NORM) if norm else nn.Identity()
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 12 -> 6
        self.local3 = LocallyConnected2d(64, 32, 6, 3, padding=1)
        self.local4 = LocallyConnected2d(32, 32, 6, 3, padding=1)
        self.fc10 = nn.Linear(32 * 6 * 6, num_classes)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """cuda-convnet's initialisation: Gaussian weights of each layer's ``INIT_STD``, biases 0."""
        for name, std in INIT_STD.items():
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, 0.0, std, generator=generator)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.norm1(torch.relu(self.conv1(x))))
        x = self.pool2(self.norm2(torch.relu(self.conv2(x))))
        x = torch.relu(self.local4(torch.relu(self.local3(x))))
        return self.fc10(x.flatten(1))


def make_optimizer(model: ConvLocalNet, lr: float = LR) -> torch.optim.SGD:
    """cuda-convnet's update as SGD: weights at ``lr`` with their layer's decay, biases at twice it without."""
    groups = []
    for name, decay in WEIGHT_DECAY.items():
        layer = getattr(model, name)
        groups.append({"params": [layer.weight], "lr": lr, "weight_decay": decay, "name": f"{name}.weight"})
        groups.append({"params": [layer.bias], "lr": BIAS_LR_FACTOR * lr, "weight_decay": 0.0, "name": f"{name}.bias"})
    return torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM)


def run_key(variant: str, seed: int, epochs: int, lr: float, batch_size: int, train: ImageSet,
            test: ImageSet, data_hash: str, anneal: tuple[int, int] = ANNEAL) -> dict:
    return {"variant": variant, "seed": seed, "epochs": epochs, "lr": lr, "anneal": list(anneal),
            "batch_size": batch_size, "train_images": len(train), "test_images": len(test), "data": data_hash,
            "version": RECORD_VERSION}


def rate_factor(epoch: int, epochs: int, anneal) -> float:
    """The rate factor in epoch ``epoch`` (from 0): 1, 1/10 for ``anneal[0]`` epochs, 1/100 for ``anneal[1]``."""
    first, second = anneal
    return 0.01 if epoch >= epochs - second else 0.1 if epoch >= epochs - second - first else 1.0


HISTORY = {"epoch": int, "lr": float, "train_loss": float, "train_error": float, "seconds": float}
RUN = {"key": dict, "variant": str, "seed": int, "epochs": int, "lr": float, "anneal": [int], "batch_size": int,
       "test_error_ten_view": float, "test_error_centre": float, "train_error_last_epoch": (None, float),
       "diverged": bool, "seconds": float, "device": str, "history": [HISTORY]}  # a run's record


def train_run(train: ImageSet, test: ImageSet, key: dict, device, partial: dict | None = None) -> dict:
    """The record of one (variant, seed) run of ``key['epochs']`` (continued from ``partial``), tested on ``test``."""
    model = ConvLocalNet(norm=key["variant"] == "with", num_classes=len(train.classes))
    model.reset_parameters(generator=torch.Generator().manual_seed(key["seed"]))
    inputs = Inputs(train.images)
    run = SmallTrainer(model, make_optimizer(model, key["lr"]), train, inputs, seed=key["seed"],
                       batch_size=key["batch_size"], crop=CROP, device=device,
                       schedule=lambda epoch: rate_factor(epoch, key["epochs"], key["anneal"]))
    run.resume(partial)
    run.train(key["epochs"] - run.epochs_done, f"{key['variant']} norm, seed {key['seed']}", partial=partial)
    history = [{**{k: p[k] for k in HISTORY}, "epoch": round(p["epoch"])} for p in run.points]
    errors = test_errors(model, test, inputs, CROP, run.device)
    return {"key": key, **{k: key[k] for k in ("variant", "seed", "epochs", "lr", "anneal", "batch_size")},
            "test_error_ten_view": errors["ten_view"], "test_error_centre": errors["centre"],
            "train_error_last_epoch": history[-1]["train_error"] if history else None,
            "diverged": run.diverged, "seconds": run.seconds, "device": str(run.device), "history": history}


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


def summarise(records: list[dict], epochs: int) -> dict:
    """Per variant the mean and spread over seeds, the paired difference (without minus with), the verdict."""
    by = {(r["variant"], r["seed"]): r for r in records}
    seeds = sorted({r["seed"] for r in records})
    out = {"variants": {}, "difference": {}, "paper": {"test_error": PAPER, "epochs_about": PAPER_EPOCHS}}
    for view in VIEWS:
        error = {variant: [by[variant, s][f"test_error_{view}"] for s in seeds] for variant in VARIANTS}
        for variant in VARIANTS:
            out["variants"].setdefault(variant, {})[view] = _spread(error[variant])
        out["difference"][view] = _spread([a - b for a, b in zip(error["without"], error["with"])])
    d = out["difference"]["ten_view"]
    spread = f" +- {d['std']:.2f} points" if d["std"] is not None else " points (one seed: no spread)"
    change = (f"lowered test error by {d['mean']:.2f}" if d["mean"] > 0 else
              f"raised test error by {-d['mean']:.2f}" if d["mean"] < 0 else "changed test error by 0.00")
    out["verdict"] = (f"normalisation {change}{spread} over {console.plural(len(seeds), 'seed')} at "
                      f"{console.plural(epochs, 'epoch')} (ten-view test); the paper: 2 points lower at about "
                      f"{PAPER_EPOCHS['without']} (13%) and {PAPER_EPOCHS['with']} (11%) epochs")
    return out


def run_lrn_experiment(train: ImageSet, test: ImageSet, epochs: int, seeds, out: Path, device,
                       lr: float = LR, batch_size: int = BATCH_SIZE, anneal: tuple[int, int] = ANNEAL,
                       describe: dict | None = None, variants=VARIANTS) -> dict | None:
    """Both variants for every seed, then lrn.json, lrn.md and lrn.png in ``out``; one variant: its runs only, None."""
    out = Path(out)
    digest = hashlib.sha256()
    for array in (train.images, train.labels, test.images, test.labels):  # a record is reused only for the same data
        digest.update(array.contiguous().numpy().tobytes())
    data_hash = digest.hexdigest()[:12]
    records = []
    for seed in seeds:
        for variant in (v for v in VARIANTS if v in variants):
            key = run_key(variant, seed, epochs, lr, batch_size, train, test, data_hash, anneal)
            name = (f"{variant}-seed{seed}-e{epochs}-lr{lr:g}-a{anneal[0]}-{anneal[1]}-b{batch_size}"
                    f"-n{len(train)}-t{len(test)}-{data_hash}")
            store = RunStore(out, key, RUN)
            records.append(store.record(name, lambda partial: train_run(train, test, key, device, partial)))
    if set(variants) != set(VARIANTS):
        return None
    result = {"experiment": "lrn", **(describe or {}), "epochs": epochs, "seeds": list(seeds), "lr": lr,
              "bias_lr": 2 * lr, "anneal": list(anneal), "batch_size": batch_size, "train_images": len(train),
              "test_images": len(test), "data_fingerprint": data_hash, **summarise(records, epochs), "runs": records}
    write_json(out / "lrn.json", result)
    atomic_write_text(format_table(result) + "\n", out / "lrn.md")
    save_figure(draw_lrn(result), out / "lrn.png")
    return result


def format_table(result: dict) -> str:
    """lrn.md: the per-seed errors, the means and the paired difference beside the paper's."""
    def cell(s: dict) -> str:
        return f"{s['mean']:.2f}" + (f" +- {s['std']:.2f}" if s["std"] is not None else "")

    first, second = result.get("anneal", (0, 0))
    rates = f"lr {result['lr']:g} (biases {result['bias_lr']:g})"
    rates += (f" for {console.plural(result['epochs'] - first - second, 'epoch')}, then {first} at lr / 10 and "
              f"{second} at lr / 100" if first or second else " throughout")
    lines = [f"# Section 3.3 on CIFAR-10: response normalisation, {console.plural(result['epochs'], 'epoch')} per run",
             "", f"Test set: {result.get('test_set', 'given')} ({result['test_images']} images); "
             f"{result['train_images']} training images; {rates}; batch {result['batch_size']}.", "",
             "| seed | without norm, ten-view | with norm, ten-view | without, centre | with, centre |",
             "| --- | --- | --- | --- | --- |"]
    by = {(r["variant"], r["seed"]): r for r in result["runs"]}
    for s in result["seeds"]:
        errors = [f"{by[v, s][f'test_error_{view}']:.2f}" for view in VIEWS for v in VARIANTS]
        lines.append(f"| {s} | {' | '.join(errors)} |")
    v, d = result["variants"], result["difference"]
    lines += [f"| mean +- sd | {' | '.join(cell(v[variant][view]) for view in VIEWS for variant in VARIANTS)} |",
              "| paper | 13 (about 160 epochs) | 11 (about 500 epochs) | | |", "",
              f"Paired difference (without minus with), ten-view: {cell(d['ten_view'])} points; "
              f"centre view: {cell(d['centre'])} points (paper: 2).", "", f"**{result['verdict']}.**"]
    return "\n".join(lines)


def draw_lrn(result: dict):
    """Left: per-seed test errors, their means and the paper's; right: each run's training error per epoch."""
    from matplotlib.ticker import MaxNLocator

    from alexnet.analysis.drawing import pyplot

    fig, (ax, curves) = pyplot().subplots(1, 2, figsize=(10, 4))
    colours = {"without": "tab:blue", "with": "tab:red"}
    for x, variant in enumerate(VARIANTS):
        spread = result["variants"][variant]["ten_view"]
        ax.bar(x, spread["mean"], width=0.5, color="lightgrey", edgecolor="black",
               yerr=spread["std"] or 0, capsize=4, label="mean over seeds" if x == 0 else None)
        ax.plot([x] * len(spread["values"]), spread["values"], "o", color="black", label="one seed" if x == 0 else None)
        ax.plot([x - 0.3, x + 0.3], [PAPER[variant]] * 2, "--", color="red", label="paper" if x == 0 else None)
    ax.set_xticks(range(len(VARIANTS)), ["without norm\n(13pct net)", "with norm\n(11pct net)"])
    ax.set_ylabel("CIFAR-10 test error, ten-view (%)")
    ax.set_title(f"{console.plural(result['epochs'], 'epoch')} each; paper: 13% (~160 ep) and 11% (~500 ep)",
                 fontsize=9)
    ax.legend(fontsize=8)
    labelled = set()
    for run in result["runs"]:
        label = None if run["variant"] in labelled else f"{run['variant']} norm"
        labelled.add(run["variant"])
        # marked points: a 1-epoch run is one point per run; a cross over a dot where the two coincide
        curves.plot([h["epoch"] for h in run["history"]], [h["train_error"] for h in run["history"]],
                    "o-" if run["variant"] == "without" else "x-", color=colours[run["variant"]], linewidth=1,
                    markersize=5, label=label)
    first, second = result.get("anneal", (0, 0))
    if first or second:
        curves.axvspan(result["epochs"] - first - second + 0.5, result["epochs"] + 0.5, color="0.92",
                       label="lr / 10, then / 100", zorder=0)
    curves.set_xlim(0.5, result["epochs"] + 0.5)
    curves.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs
    curves.set_xlabel("epoch")
    curves.set_ylabel("training error, random crops (%)")
    curves.set_title("training error per epoch, one line per run", fontsize=9)
    curves.legend(fontsize=8)
    fig.tight_layout()
    return fig
