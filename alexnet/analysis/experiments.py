"""``alexnet experiment``: the paper's experiments as commands that measure them.

    alexnet experiment relu-vs-tanh [--data cifar10] [--epochs N] [--limit N] [--lrn] [--json FILE]
        Figure 1 (section 3.1): epochs and seconds to 25% CIFAR-10 training error with ReLU and
        with tanh, and their ratio (the paper: about 6); figure1.png. With --lrn, section 3.3's
        CIFAR-10 result as well (test error without/with response normalisation; paper 13%/11%).
        See alexnet.analysis.figure1 for the protocol.

    alexnet experiment ablations --data PREPARED [--out DIR] [--variants ...] [any alexnet train option]
        Trains the paper's network and its variants (no LRN, non-overlapping pooling, no dropout,
        no PCA colour noise, one tower with half the kernels, a middle conv layer removed) for the
        same budget, each in DIR/<variant> (resumed when run again), and writes the table of their
        errors beside the paper's differences (ablations.json, ablations.md). See
        alexnet.analysis.ablations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from alexnet.atomic import atomic_write_text, save_figure, write_json
from alexnet.devices import pick_device
from alexnet.errors import UserError


def run_relu_vs_tanh(args: argparse.Namespace) -> int:
    from alexnet.analysis.figure1 import DEFAULT_LRS, draw_figure1, relu_vs_tanh
    from alexnet.analysis.imageset import load_images

    if args.epochs < 1 or (args.limit is not None and args.limit < 2):
        raise UserError("--epochs must be at least 1 and --limit at least 2")
    if not 0 < args.holdout < 1:
        raise UserError(f"--holdout must lie between 0 and 1, not {args.holdout}")
    data = load_images(args.data, size=32, limit=args.limit, seed=args.seed)
    heldout = None
    if args.lrn:
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))
        cut = max(1, int(round(len(data) * args.holdout)))
        data, heldout = data.subset(order[cut:]), data.subset(order[:cut])
    result = relu_vs_tanh(data, args.epochs, lrs=args.lrs or DEFAULT_LRS, search_epochs=args.search_epochs,
                          heldout=heldout, batch_size=args.batch_size, seed=args.seed,
                          device=pick_device(args.device))
    result["data"] = str(args.data)
    out = Path(args.out)
    save_figure(draw_figure1(result), out / "figure1.png")
    write_json(out / "relu-vs-tanh.json", result)
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
    elif args.json:
        write_json(args.json, result)
    print(relu_vs_tanh_summary(result))
    print(f"written: {out / 'figure1.png'}, {out / 'relu-vs-tanh.json'}")
    return 0


def relu_vs_tanh_summary(result: dict) -> str:
    """The numbers of a relu-vs-tanh result as a few readable lines."""
    lines = []
    for activation in ("relu", "tanh"):
        run = result["runs"][activation]
        cross = run["crossing_25"]
        reached = (f"25% after {cross['epoch']:.2f} epochs, {cross['seconds']:.1f} s" if cross
                   else f"not 25% within {run['epochs']} epochs")
        lines.append(f"{activation:5s} lr {run['lr']:<6g} {reached}")
    speed = result["speedup"]
    if speed.get("epochs"):
        bound = ">= " if speed.get("lower_bound") else ""
        lines.append(f"ReLU is {bound}{speed['epochs']:.1f}x faster in epochs, {bound}{speed['seconds']:.1f}x "
                     "in seconds (paper: about 6x)")
    if "lrn" in result:
        lrn = result["lrn"]
        lines.append(f"held-out test error: {lrn['test_error_without_lrn']:.1f}% without LRN, "
                     f"{lrn['test_error_with_lrn']:.1f}% with (paper: 13% and 11%)")
    return "\n".join(lines)


def run_ablations(args: argparse.Namespace) -> int:
    from alexnet.analysis.ablations import format_table, run_variants
    from alexnet.train.config import config_from_args

    if args.resume:
        raise UserError("--resume: ablations resume on their own; run the same command again")
    out = Path(args.out or "runs/ablations")
    train_args = argparse.Namespace(**{k: v for k, v in vars(args).items()
                                       if k not in ("experiment", "variants", "drop_layer")})
    train_args.out = str(out / "paper")
    base = config_from_args(train_args)
    if "paper" not in args.variants:
        args.variants.insert(0, "paper")  # the reference every difference is measured from
    result = run_variants(base, args.variants, out, args.drop_layer)
    write_json(out / "ablations.json", result)
    table = format_table(result)
    atomic_write_text(table + "\n\n" + result["note"] + "\n", out / "ablations.md")
    print(table)
    print(f"written: {out / 'ablations.json'}, {out / 'ablations.md'}")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"relu-vs-tanh": run_relu_vs_tanh, "ablations": run_ablations}[args.experiment](args)
