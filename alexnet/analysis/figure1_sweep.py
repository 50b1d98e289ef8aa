"""What Figure 1's ratio depends on (``--sweep``): inputs x init, tanh at its own best rate and at ReLU's."""

from pathlib import Path

from alexnet.analysis.figure1 import error_axis, relu_vs_tanh, speedup
from alexnet.analysis.imageset import ImageSet
from alexnet.defaults import SWEEP_SETTINGS

SETTINGS = SWEEP_SETTINGS  # inputs-init; also the folder names under OUT/sweep
COMBINATIONS = tuple(tuple(setting.split("-")) for setting in SETTINGS)


def sweep(data: ImageSet, epochs: int, out: Path, seed: int = 0, bias_lr: float = 2.0, settings=SETTINGS,
          **options) -> dict:
    """One row per (inputs, init, lr choice) of ``settings`` (default: all), and their curves."""
    rows, curves = [], {}
    for inputs, init in (c for c in COMBINATIONS if "-".join(c) in settings):
        protocol = {"inputs": inputs, "init": init, "bias_lr": bias_lr}
        folder = out / "sweep" / f"{inputs}-{init}"
        own = relu_vs_tanh(data, epochs, seeds=[seed], protocol=protocol, out=folder, **options)
        relu, tanh = own["runs"]["relu"][0], own["runs"]["tanh"][0]
        rows.append(_row(inputs, init, "own best", relu, tanh, epochs))
        setting = curves[f"{inputs}-{init}"] = {"relu": _curve(relu), "tanh": _curve(tanh)}
        relu_lr = own["search"]["relu"]["chosen"]
        if relu_lr != own["search"]["tanh"]["chosen"]:
            tanh = relu_vs_tanh(data, epochs, seeds=[seed], protocol=protocol, out=folder, activations=("tanh",),
                                fixed_lrs={"tanh": relu_lr}, **options)["runs"]["tanh"][0]
            setting["tanh_at_relu_lr"] = _curve(tanh)
        rows.append(_row(inputs, init, "ReLU's", relu, tanh, epochs))
    return {"images": len(data), "epochs": epochs, "seed": seed, "bias_lr": bias_lr, "rows": rows, "curves": curves}


def _curve(run: dict) -> dict:
    return {"lr": run["lr"], "epoch": [p["epoch"] for p in run["points"]],
            "train_error": [p["train_error"] for p in run["points"]]}


def _row(inputs: str, init: str, choice: str, relu: dict, tanh: dict, budget: int) -> dict:
    def cross(run: dict) -> str:
        return f"{run['crossing_25']['epoch']:.2f}" if run["crossing_25"] else f"> {min(run['epochs'], budget)}"

    ratio = speedup([relu], [tanh])
    value, upper = ratio["epochs"], False
    if value is None and tanh["crossing_25"] and relu["points"]:
        # ReLU missed 25% where tanh reached it: tanh is faster, the ratio at most this
        value, upper = tanh["crossing_25"]["epoch"] / relu["points"][-1]["epoch"], True
    return {"inputs": inputs, "init": init, "tanh_lr_choice": choice, "relu_lr": relu["lr"], "tanh_lr": tanh["lr"],
            "relu_epochs_to_25": cross(relu), "tanh_epochs_to_25": cross(tanh),
            "ratio": value, "lower_bound": bool(ratio.get("lower_bound")), "upper_bound": upper}


def format_sweep(result: dict) -> str:
    """The sweep as a markdown table."""
    lines = [f"Epochs to 25% CIFAR-10 training error, {result['images']} images, up to {result['epochs']} epochs, "
             f"seed {result['seed']}, bias lr x{result['bias_lr']:g}.", "",
             "| inputs | init | tanh's lr | ReLU lr | tanh lr | ReLU: epochs to 25% | tanh: epochs to 25% | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['inputs']} | {r['init']} | {r['tanh_lr_choice']} | {r['relu_lr']:g} | {r['tanh_lr']:g} | "
                     f"{r['relu_epochs_to_25']} | {r['tanh_epochs_to_25']} | {ratio_text(r)} |")
    return "\n".join(lines)


def draw_sweep(result: dict):
    """One Figure 1 panel per (inputs, init): ReLU solid, tanh at its own rate dashed, at ReLU's dotted."""
    from alexnet.analysis.drawing import pyplot

    fig, axes = pyplot().subplots(2, 2, figsize=(9, 6.5), sharex=True, sharey=True)
    ratios = {(r["inputs"], r["init"], r["tanh_lr_choice"]): r for r in result["rows"]}
    for ax, (inputs, init) in zip(axes.flat, COMBINATIONS):
        setting = result["curves"].get(f"{inputs}-{init}", {})
        for key, style, name in (("relu", "-", "ReLU"), ("tanh", "--", "tanh, own best lr"),
                                 ("tanh_at_relu_lr", ":", "tanh at ReLU's lr")):
            if key in setting:
                curve = setting[key]
                ax.plot(curve["epoch"], [e / 100 for e in curve["train_error"]], style, color="black",
                        linewidth=1.4, label=f"{name} ({curve['lr']:g})")
        own, shared = ratios.get((inputs, init, "own best")), ratios.get((inputs, init, "ReLU's"))
        title = f"{inputs} inputs, {'authors’' if init == 'authors' else 'PyTorch'} init"
        if own and shared:
            title += f"\nratio {ratio_text(own)} (own lr), {ratio_text(shared)} (ReLU's lr)"
        ax.set_title(title, fontsize=9)
        error_axis(ax, [e for each in result["curves"].values() for c in each.values() for e in c["train_error"]],
                   result["epochs"])
        ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("Epochs")
    for ax in axes[:, 0]:
        ax.set_ylabel("Training error rate")
    fig.suptitle(f"What Figure 1's ratio depends on ({result['images']} training images, seed {result['seed']}; "
                 "paper: ~6x)", fontsize=10)
    fig.tight_layout()
    return fig


def ratio_text(row: dict) -> str:
    if row["ratio"] is None:
        return "–"
    bound = ">= " if row["lower_bound"] else "<= " if row.get("upper_bound") else ""  # results before upper bounds
    return f"{bound}{row['ratio']:.1f}x"
