"""The paper's ablations: each variant an ordinary training run in ``OUT/<variant>``, beside the paper's difference."""

import dataclasses
from pathlib import Path

from alexnet.analysis.runs import read_metrics
from alexnet.errors import UserError

# name -> (what changes, paper's (top-1, top-5) difference or None, its words)
PAPER_DIFFERENCES = {
    "paper": ("the paper's network and recipe", (0.0, 0.0), "reference"),
    "no-lrn": ("no local response normalisation (section 3.3)", (1.4, 1.2), "+1.4 / +1.2"),
    "non-overlapping-pooling": ("pooling z=s=2 (section 3.4)", (0.4, 0.3), "+0.4 / +0.3"),
    "no-dropout": ("no dropout (section 4.2)", None, "overfits substantially (no number)"),
    "no-pca": ("no PCA colour augmentation (section 4.1)", (1.0, None), "over +1 top-1"),
    "one-tower": ("one tower, half the kernels in conv1-conv4 (section 3.2)", (1.7, 1.2), "+1.7 / +1.2"),
    "no-middle-conv": ("one middle convolutional layer removed (section 7)", (2.0, None), "about +2 top-1"),
}
VARIANTS = tuple(PAPER_DIFFERENCES)


def variant_changes(name: str, model_options: dict, drop_layer: str = "conv4") -> dict:
    """The settings that turn the paper's run (its ``model_options``, scaled down or not) into variant ``name``."""
    if name not in PAPER_DIFFERENCES:
        raise UserError(f"unknown ablation {name!r}; known: {', '.join(VARIANTS)}")
    options = dict(model_options)
    if name == "no-pca":
        return {"model_options": options, "pca_std": 0.0}
    if name == "one-tower":
        from alexnet.model import one_tower_channels  # here: alexnet.options reads VARIANTS without torch

        options["towers"], options["channels"] = 1, list(one_tower_channels(options.get("channels") or None))
    options.update({"no-lrn": {"lrn": False}, "non-overlapping-pooling": {"pooling": "non-overlapping"},
                    "no-dropout": {"dropout": 0.0}, "no-middle-conv": {"drop_layer": drop_layer}}.get(name, {}))
    return {"model_options": options}


def run_variants(base, names, out: Path, drop_layer: str = "conv4") -> dict:
    """Train (or resume, or keep) every variant of ``base`` (a TrainConfig); the table as a dict."""
    from alexnet.train.config import check
    from alexnet.train.loop import train

    skipped = {}
    for name in names:
        try:
            changes = variant_changes(name, base.model_options or {}, drop_layer)
        except UserError as err:
            skipped[name] = str(err)
            continue
        config = dataclasses.replace(base, out=str(out / name), **changes)
        check(config)
        done = (read_metrics(out / name) or [{"epoch": 0}])[-1]["epoch"]
        if done >= config.epochs:
            print(f"{name}: finished earlier ({done} epochs), kept")
            continue
        last = out / name / "checkpoints" / "last.pt"
        print(f"{name}: {'resuming' if last.exists() else 'training'} ({PAPER_DIFFERENCES[name][0]})")
        if status := train(config, resume=last if last.exists() else None):
            raise UserError(f"ablation {name} stopped (exit status {status}); run the command again to resume")
    return table(names, out, skipped)


def table(names, out: Path, skipped: dict | None = None) -> dict:
    """Final validation errors of each variant folder, and their difference to the paper's network."""
    rows = []
    for name in names:
        last = ([m for m in read_metrics(out / name) if m.get("val_top1_error") is not None] or [{}])[-1]
        rows.append({"variant": name, "change": PAPER_DIFFERENCES[name][0], "epochs": last.get("epoch"),
                     "top1_error": last.get("val_top1_error"), "top5_error": last.get("val_top5_error"),
                     "paper": PAPER_DIFFERENCES[name][2]})
        if name in (skipped or {}):
            rows[-1]["skipped"] = skipped[name]
    reference = next((row for row in rows if row["variant"] == "paper"), {})
    for row in rows:
        for k in ("top1", "top5"):
            own, paper = row[f"{k}_error"], reference.get(f"{k}_error")
            row[f"{k}_difference"] = own - paper if own is not None and paper is not None else None
    return {"rows": rows, "note": "differences: variant minus the paper's network, in percentage points, "
            "final validation errors after the same number of epochs"}


def format_table(result: dict) -> str:
    """The ablation table as Markdown."""
    def cell(value, signed=False):
        return "–" if value is None else (f"{value:+.1f}" if signed else f"{value:.1f}%")

    lines = ["| variant | top-1 | top-5 | Δ top-1 | Δ top-5 | paper's Δ |", "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {cell(r['top1_error'])} | {cell(r['top5_error'])} | "
                     f"{cell(r['top1_difference'], True)} | {cell(r['top5_difference'], True)} | "
                     f"{r.get('skipped') or r['paper']} |")
    return "\n".join(lines)
