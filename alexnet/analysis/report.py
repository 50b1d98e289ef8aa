"""``alexnet report``: one self-contained HTML page that puts runs beside the paper's numbers.

    alexnet report RUN_DIR... --out report.html

For each folder (a training run folder, or the output folder of ``alexnet figures``,
``alexnet experiment`` or ``alexnet retrieval``) the page shows what it finds there and in its
direct subfolders (``figures/``, ``retrieval/``, ...; not ``checkpoints/`` or ``tensorboard/``):
- ``config.yaml``: the configuration the run used;
- ``metrics.jsonl``: the training curves (drawn here) and the final and best errors;
- evaluation results (``*.json`` written by ``alexnet evaluate --json``): centre and ten-crop errors;
- pictures (``*.png``) and ``colour.json`` (Figure 3's number);
- ``relu-vs-tanh.json`` (Figure 1), ``ablations.json`` (the paper's ablations) and
  ``retrieval.json`` (section 6.1's binary codes).
A Table 2-style table puts every run's errors under the paper's. Pictures are embedded as
base64 data, styles are inline: the file opens anywhere, offline, with no server.

What comes from a file is checked before anything is drawn: each JSON file and ``metrics.jsonl``
row against the shape the report reads (:mod:`alexnet.analysis.report_schema`: a missing field or
a value of another type is one line naming the file and the field), and all its text is escaped,
so that no element or attribute of the page comes from a file.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import yaml

from alexnet.analysis import drawing
from alexnet.atomic import atomic_write_text
from alexnet.analysis.report_schema import EVALUATION, EXPERIMENTS, METRICS_ROW, check
from alexnet.analysis.runs import checkpoint_classes, read_config, read_metrics, resolve_checkpoint
from alexnet.classes import chance_error
from alexnet.console import plural
from alexnet.errors import UserError

# Table 2 (section 6): ILSVRC-2012, errors in percent; None where the paper gives none.
PAPER_TABLE2 = [
    ("SIFT + FVs [7]", None, None, 26.2),
    ("1 CNN", 40.7, 18.2, None),
    ("5 CNNs", 38.1, 16.4, 16.4),
    ("1 CNN*", 39.0, 16.6, None),
    ("7 CNNs*", 36.7, 15.4, 15.3),
]
SKIPPED_FOLDERS = {"checkpoints", "tensorboard"}
PICTURE_ORDER = ["curves.png", "kernels.png", "predictions.png", "neighbours.png", "figure1.png", "sweep.png",
                 "lrn.png"]

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.4em; } .meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f3f3; }
tr.paper td { color: #555; background: #fafafa; } tr.run td { font-weight: 600; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
details summary { cursor: pointer; color: #246; }
"""


# --- reading a folder -----------------------------------------------------------------------------

MAX_JSON_BYTES = 64 << 20  # an evaluation over ILSVRC's 1000 classes is about 50 kB


def _read_json(path: Path):
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise UserError(f"{path}: larger than {MAX_JSON_BYTES:,} bytes, not a result the report reads")
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:  # ValueError: not UTF-8, not JSON
        raise UserError(f"{path}: not readable JSON ({str(err)[:200] or type(err).__name__})") from None


def collect(folder: str | Path) -> dict:
    """Everything the report can show of one folder (see the module doc)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    found = {"name": folder.name or str(folder), "path": str(folder), "config": read_config(folder),
             "metrics": read_metrics(folder), "evaluations": [], "pictures": {}, "experiments": {}}
    check(found["config"], dict, folder / "config.yaml")
    for row in found["metrics"]:
        check(row, METRICS_ROW, f"{folder / 'metrics.jsonl'}, epoch {row['epoch']}")
    try:
        checkpoint = resolve_checkpoint(folder)[0]
    except UserError:  # a folder of experiments only
        checkpoint = None
    found["classes"] = checkpoint_classes(checkpoint) if checkpoint else None
    places = [folder] + sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in SKIPPED_FOLDERS)
    for place in places:
        for png in sorted(place.glob("*.png")):
            found["pictures"].setdefault(png.name, png)
        for path in sorted(place.glob("*.json")):
            data = _read_json(path)
            if path.stem in EXPERIMENTS:
                check(data, EXPERIMENTS[path.stem], path)
                found["experiments"][path.stem] = data
            elif isinstance(data, dict) and "top1_error" in data and "top5_error" in data:
                check(data, EVALUATION, path)
                found["classes"] = evaluation_classes(path, data, found["classes"], checkpoint)
                found["evaluations"].append(data | {"file": path.name})
    return found


def evaluation_classes(path: Path, evaluation: dict, classes: int | None, checkpoint: Path | None) -> int | None:
    """The number of classes the run is measured on, checked against an ``alexnet evaluate --json``
    result (its ``per_class_accuracy`` has one entry per class of the data evaluated on): errors on
    other classes than the run's network knows would stand beside the wrong chance level."""
    count = len(evaluation.get("per_class_accuracy") or {}) or None
    if count is None or classes is None:
        return classes or count
    if count != classes:
        other = (f"the run's network ({checkpoint}) knows {classes}" if checkpoint
                 else f"another evaluation in the folder is over {classes}")
        raise UserError(f"{path}: evaluated on data of {count} classes, but {other} classes; "
                        "keep each evaluation beside the run it measures")
    return classes


# --- rendering --------------------------------------------------------------------------------------


def _png(path_or_fig) -> str:
    """An <img> with the PNG inlined as base64 (from a file or a matplotlib figure)."""
    if isinstance(path_or_fig, Path):
        data = path_or_fig.read_bytes()
    else:
        buffer = io.BytesIO()
        path_or_fig.savefig(buffer, format="png", dpi=90)
        drawing.pyplot().close(path_or_fig)
        data = buffer.getvalue()
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1f}%"


def _p(text: str, css: str = "") -> str:
    """A paragraph of ``text``, escaped: what a file holds never becomes markup."""
    opening = f'<p class="{css}">' if css else "<p>"
    return f"{opening}{escape(text)}</p>"


def _table(header: list[str], rows: list[list], row_class: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{row_class[n]}"' if row_class and row_class[n] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def final_errors(run: dict) -> dict:
    """Last-epoch and best validation errors (centre crop, as training measures them), and any
    evaluation results (``centre``/``ten`` crops)."""
    errors = {}
    rows = [m for m in run["metrics"] if m.get("val_top1_error") is not None]
    if rows:
        best = min(rows, key=lambda m: m["val_top1_error"])
        errors["last"] = (rows[-1]["epoch"], rows[-1]["val_top1_error"], rows[-1].get("val_top5_error"))
        errors["best"] = (best["epoch"], best["val_top1_error"], best.get("val_top5_error"))
    for ev in run["evaluations"]:
        crops = "ten" if ev.get("crops") == "ten" else "centre"
        errors[crops] = (ev.get("images"), ev["top1_error"], ev["top5_error"])
    return errors


def chance(classes: int | None) -> str:
    """The top-1 / top-5 error of guessing among ``classes``, for the column beside each error."""
    if not classes:
        return "–"
    return f"{_pct(chance_error(classes, 1))} / {_pct(chance_error(classes, 5))} ({classes} classes)"


CHANCE_NOTE = ("Chance: the top-1 / top-5 error of guessing uniformly among the classes (90% / 50% "
               "for 10 classes, 99.9% / 99.5% for ILSVRC's 1000); an error means something only beside it.")


def table2(runs: list[dict]) -> str:
    """The paper's Table 2 with a row per run (its best available validation errors)."""
    rows = [[name, _pct(t1), _pct(t5), _pct(test5), chance(1000)] for name, t1, t5, test5 in PAPER_TABLE2]
    classes = ["paper"] * len(rows)
    for run in runs:
        errors = final_errors(run)
        for key, label in (("ten", "ten crops"), ("centre", "centre crop"), ("best", "best epoch, centre crop")):
            if key in errors:
                _, t1, t5 = errors[key]
                rows.append([f"{run['name']} ({label})", _pct(t1), _pct(t5), "–", chance(run["classes"])])
                classes.append("run")
                break
    header = ["model", "top-1 (val)", "top-5 (val)", "top-5 (test)", "chance top-1 / top-5"]
    return (_table(header, rows, classes) +
            '<p class="meta">Paper rows: ILSVRC-2012 (Table 2; * = pre-trained on ImageNet Fall 2011). '
            "A run is comparable only when it trained on ILSVRC-2012 for the paper's ~90 epochs; the "
            f"dataset of each run is in its configuration below. {escape(CHANCE_NOTE)}</p>")


def render_run(run: dict) -> str:
    parts = [f"<h2>{escape(run['name'])}</h2>", _p(run["path"], "meta")]
    config = run["config"]
    if config:
        summary = ", ".join(f"{k}: {config[k]}" for k in ("data", "arch", "epochs", "batch_size", "lr", "schedule")
                            if k in config and not isinstance(config[k], (dict, list)))  # aliases nest them deep
        parts.append(f"{_p(summary)}<details><summary>configuration (config.yaml)</summary>"
                     f"<pre>{escape(yaml.safe_dump(config, sort_keys=False))}</pre></details>")
    errors = final_errors(run)
    if errors:
        labels = {"last": "last epoch (centre crop)", "best": "best epoch (centre crop)",
                  "centre": "evaluation, centre crop", "ten": "evaluation, ten crops (section 4.1)"}
        rows = [[labels[k], v[0] if v[0] is not None else "–", _pct(v[1]), _pct(v[2]), chance(run["classes"])]
                for k, v in errors.items()]
        parts.append("<h3>Errors</h3>" + _table(["measured", "epoch / images", "top-1", "top-5",
                                                 "chance top-1 / top-5"], rows))
    if run["metrics"] and "curves.png" not in run["pictures"]:
        fig, _ = drawing.draw_curves(run["metrics"], run["classes"])
        parts.append(f"<figure>{_png(fig)}<figcaption>Training curves (dotted: learning rate divided; dash-dotted: chance).</figcaption></figure>")
    experiments = run["experiments"]
    for key, render in (("colour", render_colour), ("relu-vs-tanh", render_relu_vs_tanh), ("sweep", render_sweep),
                        ("lrn", render_lrn), ("ablations", render_ablations), ("retrieval", render_retrieval)):
        if key in experiments:
            parts.append(render(experiments[key]))
    names = sorted(run["pictures"], key=lambda n: (PICTURE_ORDER.index(n) if n in PICTURE_ORDER else 99, n))
    for name in names:
        parts.append(f"<figure>{_png(run['pictures'][name])}<figcaption>{escape(CAPTIONS.get(name, name))}"
                     "</figcaption></figure>")
    return "\n".join(parts)


CAPTIONS = {
    "curves.png": "Training curves: top-1 and top-5 error per epoch; dotted lines mark learning-rate reductions, "
                  "the dash-dotted line the error of guessing.",
    "kernels.png": "Figure 3: the conv1 kernels, tower 1 above tower 2.",
    "predictions.png": "Figure 4 (left): validation images with their five most probable labels (red: the correct one).",
    "neighbours.png": "Figure 4 (right): validation images (first column) and the training images nearest in fc7 space.",
    "figure1.png": "Figure 1: CIFAR-10 training error, ReLU (solid) against tanh (dashed).",
    "sweep.png": "What Figure 1's ratio depends on: ReLU (solid) against tanh at its own best learning rate "
                 "(dashed) and at ReLU's (dotted), for raw or standardised inputs and the authors' or PyTorch's "
                 "initialisation.",
    "lrn.png": "Section 3.3 on CIFAR-10: test error of cuda-convnet's net without and with response normalisation, "
               "per seed, beside the paper's 13% and 11%; each run's training error per epoch.",
}


def render_colour(colour: dict) -> str:
    rows = [[f"tower {t['tower']} (kernels {t['kernels'][0]}-{t['kernels'][1]})",
             f"{t['mean_specificity']:.3f}", f"{t['median_specificity']:.3f}"] for t in colour["towers"]]
    random = colour.get("random_kernel")
    if random:
        rows.append(["a random Gaussian kernel (the level of noise)", f"{random['mean']:.3f}", "–"])
    comparison = colour.get("comparison")
    return ("<h3>Figure 3: colour specificity of the conv1 kernels</h3>" +
            _table(["tower", "mean", "median"], rows) +
            (_p(comparison["line"]) if comparison else "") +
            _p(f"{colour.get('measure', '')}. Paper: {colour.get('paper', '')}.", "meta"))


def render_relu_vs_tanh(result: dict) -> str:
    rows = []
    for activation in ("relu", "tanh"):
        for run in result["runs"][activation]:
            cross = run["crossing_25"]
            rows.append([activation, run["seed"], f"{run['lr']:g}",
                         f"{cross['epoch']:.2f}" if cross else f"> {run['epochs']}",
                         f"{cross['seconds']:.0f}" if cross else "–"])
    speed = result["speedup"]
    if speed.get("epochs"):
        bound = ">= " if speed.get("lower_bound") else ""
        spread = (f" (seeds {speed['min']:.1f}-{speed['max']:.1f}x)"
                  if len(speed["per_seed"]) > 1 and "min" in speed and "max" in speed else "")
        verdict = (f"ReLU reaches 25% training error {bound}{speed['epochs']:.1f}x sooner in epochs{spread} "
                   "(paper: about 6x)")
    else:
        verdict = "ReLU did not reach 25% training error within the budget, so there is no ratio"
    protocol = result.get("protocol", {})
    setup = ", ".join(f"{k} {v}" for k, v in protocol.items())
    return ("<h3>Figure 1: ReLU against tanh on CIFAR-10</h3>" +
            _table(["activation", "seed", "learning rate", "epochs to 25%", "seconds to 25%"], rows) +
            _p(f"{verdict}; {result['images']} training images, up to {plural(result['epochs'], 'epoch')}"
               f"{'; ' + setup if setup else ''}."))


def render_sweep(result: dict) -> str:
    from alexnet.analysis.figure1_sweep import ratio_text

    rows = [[r["inputs"], r["init"], r["tanh_lr_choice"], f"{r['relu_lr']:g}", f"{r['tanh_lr']:g}",
             r["relu_epochs_to_25"], r["tanh_epochs_to_25"],
             ratio_text(r)]
            for r in result["rows"]]
    return ("<h3>Figure 1: what the ratio depends on</h3>" +
            _table(["inputs", "init", "tanh's learning rate", "ReLU lr", "tanh lr", "ReLU: epochs to 25%",
                    "tanh: epochs to 25%", "ratio"], rows) +
            _p(f"{result['images']} training images, up to {plural(result['epochs'], 'epoch')}, seed {result['seed']}."))


def render_lrn(result: dict) -> str:
    paper = result["paper"]["test_error"]
    rows = []
    for variant, label in (("without", "without response normalisation"), ("with", "with response normalisation")):
        ten = result["variants"][variant]["ten_view"]
        spread = f" ± {ten['std']:.2f}" if ten.get("std") is not None else ""
        rows.append([label, f"{ten['mean']:.2f}%{spread}", ", ".join(f"{v:.2f}" for v in ten["values"]),
                     f"{paper[variant]:g}%"])
    return ("<h3>Section 3.3: response normalisation on CIFAR-10</h3>" +
            _table(["net", "ten-view test error (mean ± sd)", "per seed", "paper"], rows) +
            _p(f"{result['verdict']}. Test set: {result.get('test_set', 'given')}; {result['train_images']} "
               f"training images, {plural(result['epochs'], 'epoch')} per run{_anneal(result)}."))


def _anneal(result: dict) -> str:
    first, second = result.get("anneal", (0, 0))  # results written before the schedule had none
    if not first and not second:
        return ", one rate throughout"
    return f", the last {first + second} annealed ({first} at lr/10, then {second} at lr/100)"


def render_ablations(result: dict) -> str:
    rows = [[r["variant"], _pct(r.get("top1_error")), _pct(r.get("top5_error")),
             _signed(r.get("top1_difference")), _signed(r.get("top5_difference")),
             r.get("skipped") or r.get("paper", "–")]
            for r in result["rows"]]
    return ("<h3>Ablations: the paper's network and its variants, same budget</h3>" +
            _table(["variant", "top-1", "top-5", "Δ top-1", "Δ top-5", "paper's Δ"], rows))


def _signed(value) -> str:
    return "–" if value is None else f"{value:+.1f}"


def render_retrieval(result: dict) -> str:
    rows = []
    for key, label in (("euclidean_fc7", f"fc7 ({result['feature_dim']} floats), Euclidean"),
                       ("binary_codes", f"{result['binary_codes']['bits']}-bit codes, Hamming")):
        r = result[key]
        rows.append([label, f"{r['precision_at_k']:.3f}", f"{r['bytes_per_image']:,} B",
                     f"{r['queries_per_s']:,.0f}"])
    heading = (f"Section 6.1: retrieval with binary codes ({result['queries']} queries, "
               f"{result['base_images']} images searched)")
    return (f"<h3>{escape(heading)}</h3>" +
            _table(["search", f"precision at {result['k']}", "memory per image", "queries/s"], rows) +
            _p(f"Chance precision {result['chance_precision']:.3f}.", "meta"))


def render(runs: list[dict], title: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep '
            f"Convolutional Neural Networks\" (NIPS 2012). Generated {stamp} by alexnet report.</p>",
            "<h2>Table 2: errors beside the paper's</h2>", table2(runs)]
    body += [render_run(run) for run in runs]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def run(args: argparse.Namespace) -> int:
    runs = [collect(folder) for folder in args.runs]
    atomic_write_text(render(runs, args.title), args.out)
    print(f"report written to {args.out} ({len(runs)} folder{'s' if len(runs) != 1 else ''})")
    return 0
