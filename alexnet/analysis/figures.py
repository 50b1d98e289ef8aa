"""``alexnet figures RUN_DIR_OR_CHECKPOINT [--data PREPARED] --out DIR``: the paper's Figures 3 and 4 (section
6.1) and a run's training curves; without ``--data`` only the kernels and curves (docs/analysis.md)."""

import argparse
from pathlib import Path

import numpy as np
import torch

from alexnet.analysis import drawing
from alexnet.analysis.colour import compare_towers, random_kernel_specificity, tower_specificity
from alexnet.atomic import only_writer, save_figure, write_json
from alexnet.analysis.inputs import CentreInput, centre_batches, centre_crop, sample_indices
from alexnet.analysis.neighbours import extract_features, nearest
from alexnet.analysis.runs import read_metrics, resolve_checkpoint
from alexnet.classes import check_classes, class_count
from alexnet.devices import pick_device
from alexnet.errors import UserError
from alexnet.inference import class_probabilities, load_model


def conv1_kernels(model) -> tuple[np.ndarray, int]:
    """The first convolution's weights [K, 3, h, w] and the number of towers of the network, read from
    the second convolution's groups (2 in the paper's network and in Caffe's bvlc_alexnet)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise UserError(f"model {getattr(model, 'arch', '?')} has no convolution")
    towers = convs[1].groups if len(convs) > 1 else 1
    return convs[0].weight.detach().float().cpu().numpy(), towers


def figure_kernels(model, out: Path) -> list[dict]:
    """Figure 3 and its colour-specificity numbers (printed and in colour.json), beside random kernels'."""
    kernels, towers = conv1_kernels(model)
    specificity = tower_specificity(kernels, towers)
    random = random_kernel_specificity(kernels.shape[1], kernels.shape[2:])
    comparison = compare_towers(specificity, random)
    fig, _ = drawing.draw_kernels(kernels, towers, specificity, random_level=random["mean"])
    save_figure(fig, out / "kernels.png")
    write_json(out / "colour.json", {
        "measure": "share of each kernel's energy outside its grey component (0 grey .. 1), mean per tower",
        "paper": "tower 1 largely colour-agnostic, tower 2 largely colour-specific (Figure 3)",
        "random_kernel": random | {"note": "Gaussian weights score Beta((C-1)m/2, m/2): mean (C-1)/C"},
        "comparison": comparison, "towers": specificity})
    for t in specificity:
        print(f"tower {t['tower']} (kernels {t['kernels'][0]}-{t['kernels'][1]}): colour specificity "
              f"{t['mean_specificity']:.3f} mean, {t['median_specificity']:.3f} median")
    print(f"a random Gaussian kernel scores {random['mean']:.3f} (sd {random['sd']:.3f} per kernel)")
    if comparison is not None:
        print(comparison["line"])
    return specificity


def figure_predictions(model, val, indices, names, device, out: Path):
    """Figure 4 (left): the five most probable classes of ``val[indices]``; ``names[c]`` labels class ``c``."""
    model = model.to(device).eval()
    images, _, windows = next(iter(centre_batches(val, indices, model.input_size, len(indices))))
    probs = class_probabilities([model], [CentreInput(model, val, device).transform], images, windows)
    probs, classes = (t.cpu().numpy() for t in probs.topk(min(5, probs.shape[1]), dim=1))
    images = [centre_crop(val[int(i)][0], model.input_size) for i in indices]
    labels = [int(val[int(i)][1]) for i in indices]
    top = [[(names[c], float(p)) for c, p in zip(cs, ps)] for cs, ps in zip(classes, probs)]
    # the true class's place by index, not by name: ImageNet has two classes named "crane"
    ranks = [list(cs).index(label) if label in cs else None for cs, label in zip(classes, labels)]
    fig, layout = drawing.draw_predictions(images, top, [names[label] for label in labels], ranks)
    save_figure(fig, out / "predictions.png")
    return layout


def figure_neighbours(model, train, val, queries, train_indices, k, args, out: Path):
    """Figure 4 (right): fc7 features of the training images, searched for each query."""
    device = pick_device(args.device)
    base = extract_features(model, train, train_indices, args.batch_size, device, args.workers,
                            out=out / "fc7-train.npy", desc="fc7 of training images")
    query = extract_features(model, val, queries, args.batch_size, device, 0, desc="fc7 of queries")
    _, found = nearest(base, query, k)
    size, names = model.input_size, class_names(model, val)
    rows = [[int(train_indices[j]) for j in row] for row in found]  # indices into ``train``
    fig, layout = drawing.draw_neighbours([centre_crop(val[int(q)][0], size) for q in queries],
                                          [[centre_crop(train[j][0], size) for j in row] for row in rows],
                                          [names[int(val[int(q)][1])] for q in queries],
                                          [[names[int(train.labels[j])] for j in row] for row in rows])
    save_figure(fig, out / "neighbours.png")
    return layout


def class_names(model, dataset) -> list[str]:
    """Readable class names: the dataset's (``class_names``), else the model's, else ``classes``."""
    names = getattr(dataset, "class_names", None) or getattr(model, "class_names", None) or dataset.classes
    return [str(n) for n in names]


def run(args: argparse.Namespace) -> int:
    checkpoint, run_dir = resolve_checkpoint(args.source)
    out = Path(args.out) if args.out else (run_dir or checkpoint.parent) / "figures"
    with only_writer(out, f"--out {out}"):
        model = load_model(checkpoint)
        if args.data:
            from alexnet.data.dataset import PreparedDataset
            from alexnet.data.prepare import ensure_prepared
            root = ensure_prepared(args.data)
            train, val = PreparedDataset(root, "train"), PreparedDataset(root, "val")
            check_classes([model], val, [str(checkpoint)])  # before anything is drawn under wrong names
        figure_kernels(model, out)
        written = ["kernels.png", "colour.json"]
        if run_dir is not None and (metrics := read_metrics(run_dir)):
            fig, _ = drawing.draw_curves(metrics, class_count(model))
            save_figure(fig, out / "curves.png")
            written.append("curves.png")
        if args.data:
            rng = np.random.default_rng(args.seed)
            picks = rng.choice(len(val), size=min(args.images + args.queries, len(val)), replace=False)
            figure_predictions(model, val, picks[: args.images], class_names(model, val), pick_device(args.device), out)
            train_indices = sample_indices(len(train), args.train_limit, rng)
            queries = picks[args.images :] if len(picks) > args.images else picks[: args.queries]
            figure_neighbours(model, train, val, queries, train_indices, args.neighbours, args, out)
            written += ["predictions.png", "neighbours.png", "fc7-train.npy"]
        print("written: " + ", ".join(str(out / name) for name in written))
    return 0
