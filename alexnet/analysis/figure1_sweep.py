"""What Figure 1's ratio depends on: ``alexnet experiment relu-vs-tanh --sweep``.

The ratio of epochs to 25% training error (tanh over ReLU) is measured under each combination
of the two choices that separate the authors' setup from a modern one, and of how the
learning rates are chosen:

- inputs: raw 0-255 minus the mean image (the authors') or also divided by one global std;
- initialisation: each layer's own small Gaussian (the authors') or PyTorch's default;
- learning rate: each activation's own best (the paper's "chosen independently") or tanh
  trained at ReLU's best rate.

Each combination is a full ``relu_vs_tanh`` measurement (its own search, first seed only) in
``OUT/sweep/<inputs>-<init>``, resumed like any other run, so the settings can be split over
processes sharing ``OUT``; the table of all of them goes to sweep.json and sweep.md.
"""

from __future__ import annotations

from pathlib import Path

from alexnet.analysis.figure1 import relu_vs_tanh, speedup
from alexnet.analysis.imageset import ImageSet

COMBINATIONS = (("raw", "authors"), ("raw", "pytorch"), ("standardised", "authors"), ("standardised", "pytorch"))
SETTINGS = tuple(f"{inputs}-{init}" for inputs, init in COMBINATIONS)  # also the folder names under OUT/sweep


def _cross(run: dict, budget: int) -> str:
    cross = run["crossing_25"]
    return f"{cross['epoch']:.2f}" if cross else f"> {run['epochs'] if run['epochs'] < budget else budget}"


def sweep(data: ImageSet, epochs: int, out: Path, seed: int = 0, bias_lr: float = 2.0, settings=SETTINGS,
          **options) -> dict:
    """One row per (inputs, init, lr choice) of ``settings`` (default: all); see the module doc."""
    rows = []
    for inputs, init in COMBINATIONS:
        if f"{inputs}-{init}" not in settings:
            continue
        protocol = {"inputs": inputs, "init": init, "bias_lr": bias_lr}
        folder = out / "sweep" / f"{inputs}-{init}"
        own = relu_vs_tanh(data, epochs, seeds=[seed], protocol=protocol, out=folder, **options)
        relu, tanh = own["runs"]["relu"][0], own["runs"]["tanh"][0]
        rows.append(_row(inputs, init, "own best", relu, tanh, epochs))
        relu_lr = own["search"]["relu"]["chosen"]
        if relu_lr != own["search"]["tanh"]["chosen"]:
            shared = relu_vs_tanh(data, epochs, seeds=[seed], protocol=protocol, out=folder,
                                  activations=("tanh",), fixed_lrs={"tanh": relu_lr}, **options)
            tanh = shared["runs"]["tanh"][0]
        rows.append(_row(inputs, init, "ReLU's", relu, tanh, epochs))
    return {"images": len(data), "epochs": epochs, "seed": seed, "bias_lr": bias_lr, "rows": rows}


def _row(inputs: str, init: str, choice: str, relu: dict, tanh: dict, budget: int) -> dict:
    ratio = speedup([relu], [tanh])
    return {"inputs": inputs, "init": init, "tanh_lr_choice": choice, "relu_lr": relu["lr"], "tanh_lr": tanh["lr"],
            "relu_epochs_to_25": _cross(relu, budget), "tanh_epochs_to_25": _cross(tanh, budget),
            "ratio": ratio["epochs"], "lower_bound": bool(ratio.get("lower_bound"))}


def format_sweep(result: dict) -> str:
    """The sweep as a markdown table."""
    lines = [f"Epochs to 25% CIFAR-10 training error, {result['images']} images, up to {result['epochs']} epochs, "
             f"seed {result['seed']}, bias lr x{result['bias_lr']:g}.", "",
             "| inputs | init | tanh's lr | ReLU lr | tanh lr | ReLU: epochs to 25% | tanh: epochs to 25% | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        ratio = "–" if r["ratio"] is None else f"{'>= ' if r['lower_bound'] else ''}{r['ratio']:.1f}x"
        lines.append(f"| {r['inputs']} | {r['init']} | {r['tanh_lr_choice']} | {r['relu_lr']:g} | {r['tanh_lr']:g} | "
                     f"{r['relu_epochs_to_25']} | {r['tanh_epochs_to_25']} | {ratio} |")
    return "\n".join(lines)
