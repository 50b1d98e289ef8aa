"""``alexnet report RUN_DIR... --out report.html``: one self-contained HTML page that puts runs beside
the paper's Table 2 (docs/analysis.md). Each file is checked (:mod:`alexnet.analysis.report_schema`)
before anything is drawn and all its text is escaped: no element or attribute comes from a file."""

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
    for place in [folder] + sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in SKIPPED_FOLDERS):
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
    """The number of classes the run is measured on; a UserError when an ``alexnet evaluate --json``
    result (one ``per_class_accuracy`` entry per class) is over other classes than the run's."""
    count = len(evaluation.get("per_class_accuracy") or {}) or None
    if count is not None and classes is not None and count != classes:
        other = (f"the run's network ({checkpoint}) knows {classes}" if checkpoint
                 else f"another evaluation in the folder is over {classes}")
        raise UserError(f"{path}: evaluated on data of {count} classes, but {other} classes; "
                        "keep each evaluation beside the run it measures")
    return classes or count


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


def _pct(value, form: str = "{:.1f}%") -> str:
    """``value`` in ``form`` (default a percentage), a dash for None."""
    return "–" if value is None else form.format(value)


def _p(text: str, css: str = "") -> str:
    """A paragraph of ``text``, escaped: what a file holds never becomes markup."""
    return f'<p class="{css}">{escape(text)}</p>' if css else f"<p>{escape(text)}</p>"


def _table(header: list[str], rows: list[list], row_class: list[str] | None = None) -> str:
    html = "<table><tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in header) + "</tr>"
    for row, css in zip(rows, row_class or [""] * len(rows)):
        html += (f'<tr class="{css}">' if css else "<tr>") + "".join(f"<td>{escape(str(c))}</td>" for c in row)
        html += "</tr>"
    return html + "</table>"


def final_errors(run: dict) -> dict:
    """Last-epoch and best validation errors (centre crop) and any evaluation's (``centre``/``ten`` crops)."""
    errors = {}
    rows = [m for m in run["metrics"] if m.get("val_top1_error") is not None]
    if rows:
        for key, row in (("last", rows[-1]), ("best", min(rows, key=lambda m: m["val_top1_error"]))):
            errors[key] = (row["epoch"], row["val_top1_error"], row.get("val_top5_error"))
    for ev in run["evaluations"]:
        errors["ten" if ev.get("crops") == "ten" else "centre"] = (ev.get("images"), ev["top1_error"], ev["top5_error"])
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
    labels = {"ten": "ten crops", "centre": "centre crop", "best": "best epoch, centre crop"}  # the first a run has
    for run in runs:
        errors = final_errors(run)
        if key := next((key for key in labels if key in errors), None):
            _, t1, t5 = errors[key]
            rows.append([f"{run['name']} ({labels[key]})", _pct(t1), _pct(t5), "–", chance(run["classes"])])
    classes = ["paper"] * len(PAPER_TABLE2) + ["run"] * (len(rows) - len(PAPER_TABLE2))
    header = ["model", "top-1 (val)", "top-5 (val)", "top-5 (test)", "chance top-1 / top-5"]
    return (_table(header, rows, classes) +
            '<p class="meta">Paper rows: ILSVRC-2012 (Table 2; * = pre-trained on ImageNet Fall 2011). '
            "A run is comparable only when it trained on ILSVRC-2012 for the paper's ~90 epochs; the "
            f"dataset of each run is in its configuration below. {escape(CHANCE_NOTE)}</p>")


def render_run(run: dict) -> str:
    parts = [f"<h2>{escape(run['name'])}</h2>", _p(run["path"], "meta")]
    if config := run["config"]:
        summary = ", ".join(f"{k}: {config[k]}" for k in ("data", "arch", "epochs", "batch_size", "lr", "schedule")
                            if k in config and not isinstance(config[k], (dict, list)))  # aliases nest them deep
        parts.append(f"{_p(summary)}<details><summary>configuration (config.yaml)</summary>"
                     f"<pre>{escape(yaml.safe_dump(config, sort_keys=False))}</pre></details>")
    if errors := final_errors(run):
        labels = {"last": "last epoch (centre crop)", "best": "best epoch (centre crop)",
                  "centre": "evaluation, centre crop", "ten": "evaluation, ten crops (section 4.1)"}
        rows = [[labels[k], v[0] if v[0] is not None else "–", _pct(v[1]), _pct(v[2]), chance(run["classes"])]
                for k, v in errors.items()]
        parts.append("<h3>Errors</h3>" + _table(["measured", "epoch / images", "top-1", "top-5",
                                                 "chance top-1 / top-5"], rows))
    if run["metrics"] and "curves.png" not in run["pictures"]:
        fig, _ = drawing.draw_curves(run["metrics"], run["classes"])
        parts.append(f"<figure>{_png(fig)}<figcaption>Training curves (dotted: learning rate divided; dash-dotted: chance).</figcaption></figure>")
    for key, render in (("colour", render_colour), ("relu-vs-tanh", render_relu_vs_tanh), ("sweep", render_sweep),
                        ("lrn", render_lrn), ("ablations", render_ablations), ("retrieval", render_retrieval)):
        if key in run["experiments"]:
            parts.append(render(run["experiments"][key]))
    order = list(CAPTIONS)  # pictures in the order of their captions, others after them by name
    for name in sorted(run["pictures"], key=lambda n: (order.index(n) if n in order else 99, n)):
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
    if colour.get("random_kernel"):
        rows.append(["a random Gaussian kernel (the level of noise)", f"{colour['random_kernel']['mean']:.3f}", "–"])
    comparison = colour.get("comparison")
    return ("<h3>Figure 3: colour specificity of the conv1 kernels</h3>" +
            _table(["tower", "mean", "median"], rows) +
            (_p(comparison["line"]) if comparison else "") +
            _p(f"{colour.get('measure', '')}. Paper: {colour.get('paper', '')}.", "meta"))


def render_relu_vs_tanh(result: dict) -> str:
    rows = [[activation, run["seed"], f"{run['lr']:g}",
             f"{run['crossing_25']['epoch']:.2f}" if run["crossing_25"] else f"> {run['epochs']}",
             f"{run['crossing_25']['seconds']:.0f}" if run["crossing_25"] else "–"]
            for activation in ("relu", "tanh") for run in result["runs"][activation]]
    speed = result["speedup"]
    if speed.get("epochs"):
        bound = ">= " if speed.get("lower_bound") else ""
        spread = (f" (seeds {speed['min']:.1f}-{speed['max']:.1f}x)"
                  if len(speed["per_seed"]) > 1 and "min" in speed and "max" in speed else "")
        verdict = (f"ReLU reaches 25% training error {bound}{speed['epochs']:.1f}x sooner in epochs{spread} "
                   "(paper: about 6x)")
    else:
        verdict = "ReLU did not reach 25% training error within the budget, so there is no ratio"
    setup = ", ".join(f"{k} {v}" for k, v in result.get("protocol", {}).items())
    return ("<h3>Figure 1: ReLU against tanh on CIFAR-10</h3>" +
            _table(["activation", "seed", "learning rate", "epochs to 25%", "seconds to 25%"], rows) +
            _p(f"{verdict}; {result['images']} training images, up to {plural(result['epochs'], 'epoch')}"
               f"{'; ' + setup if setup else ''}."))


def render_sweep(result: dict) -> str:
    from alexnet.analysis.figure1_sweep import ratio_text
    rows = [[r["inputs"], r["init"], r["tanh_lr_choice"], f"{r['relu_lr']:g}", f"{r['tanh_lr']:g}",
             r["relu_epochs_to_25"], r["tanh_epochs_to_25"], ratio_text(r)] for r in result["rows"]]
    return ("<h3>Figure 1: what the ratio depends on</h3>" +
            _table(["inputs", "init", "tanh's learning rate", "ReLU lr", "tanh lr", "ReLU: epochs to 25%",
                    "tanh: epochs to 25%", "ratio"], rows) +
            _p(f"{result['images']} training images, up to {plural(result['epochs'], 'epoch')}, seed {result['seed']}."))


def render_lrn(result: dict) -> str:
    rows = []
    for variant in ("without", "with"):
        ten = result["variants"][variant]["ten_view"]
        spread = f" ± {ten['std']:.2f}" if ten.get("std") is not None else ""
        rows.append([f"{variant} response normalisation", f"{ten['mean']:.2f}%{spread}",
                     ", ".join(f"{v:.2f}" for v in ten["values"]), f"{result['paper']['test_error'][variant]:g}%"])
    first, second = result.get("anneal", (0, 0))  # results written before the schedule had none
    anneal = (f", the last {first + second} annealed ({first} at lr/10, then {second} at lr/100)"
              if first or second else ", one rate throughout")
    return ("<h3>Section 3.3: response normalisation on CIFAR-10</h3>" +
            _table(["net", "ten-view test error (mean ± sd)", "per seed", "paper"], rows) +
            _p(f"{result['verdict']}. Test set: {result.get('test_set', 'given')}; {result['train_images']} "
               f"training images, {plural(result['epochs'], 'epoch')} per run{anneal}."))


def render_ablations(result: dict) -> str:
    rows = [[r["variant"], _pct(r.get("top1_error")), _pct(r.get("top5_error")),
             _pct(r.get("top1_difference"), "{:+.1f}"), _pct(r.get("top5_difference"), "{:+.1f}"),
             r.get("skipped") or r.get("paper", "–")] for r in result["rows"]]
    return ("<h3>Ablations: the paper's network and its variants, same budget</h3>" +
            _table(["variant", "top-1", "top-5", "Δ top-1", "Δ top-5", "paper's Δ"], rows))


def render_retrieval(result: dict) -> str:
    rows = [[label, f"{r['precision_at_k']:.3f}", f"{r['bytes_per_image']:,} B", f"{r['queries_per_s']:,.0f}"]
            for label, r in ((f"fc7 ({result['feature_dim']} floats), Euclidean", result["euclidean_fc7"]),
                             (f"{result['binary_codes']['bits']}-bit codes, Hamming", result["binary_codes"]))]
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
            "<h2>Table 2: errors beside the paper's</h2>", table2(runs)] + [render_run(run) for run in runs]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def run(args: argparse.Namespace) -> int:
    runs = [collect(folder) for folder in args.runs]
    atomic_write_text(render(runs, args.title), args.out)
    print(f"report written to {args.out} ({plural(len(runs), 'folder')})")
    return 0
