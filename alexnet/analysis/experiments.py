"""``alexnet experiment``: relu-vs-tanh (Figure 1), lrn (section 3.3) and the ablations, as commands."""

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

from alexnet import console
from alexnet.analysis.ablations import format_table, run_variants
from alexnet.analysis.figure1 import DEFAULT_LRS, draw_figure1, protocol_settings, relu_vs_tanh
from alexnet.analysis.figure1_sweep import SETTINGS, draw_sweep, format_sweep, sweep
from alexnet.analysis.imageset import load_images, load_train_test
from alexnet.analysis.lrn_cifar import run_lrn_experiment
from alexnet.atomic import atomic_write_text, only_writer, save_figure, write_json
from alexnet.devices import pick_device
from alexnet.errors import UserError
from alexnet.train.config import config_from_args


def check_options(args: argparse.Namespace, at_least: dict, rates: tuple) -> None:
    """A one-line error for the first option value below its least (``at_least``) or of ``rates`` not above 0."""
    for name, least in [*at_least.items(), *((rate, None) for rate in rates)]:
        values = getattr(args, name)
        for value in values if isinstance(values, list) else [values]:
            if value is None or math.isfinite(value) and (value > 0 if least is None else value >= least):
                continue
            flag = f"--{name.replace('_', '-')}"
            raise UserError(f"{flag} must be a finite positive number, not {value}" if least is None else
                            f"{flag} must be {'a number ' if least == 0 else ''}at least {least}, not {value}")


def emit(result: dict, args: argparse.Namespace, lines: list[str]) -> None:
    """``result`` as JSON to ``--json`` ('-': the real standard output, :func:`run`), ``lines`` printed."""
    if args.json == "-":
        args.json_out.write(json.dumps(result, indent=2) + "\n")
    elif args.json:
        write_json(args.json, result)
    print("\n".join(lines))


def run_relu_vs_tanh(args: argparse.Namespace) -> int:
    check_options(args, {"epochs": 1, "search_epochs": 1, "limit": 2, "batch_size": 1, "after_crossing": 0,
                         "seeds": 0, "search_seed": 0}, ("lrs", "bias_lr"))
    protocol = protocol_settings(args.protocol, inputs=args.inputs, init=args.init, bias_lr=args.bias_lr)
    seeds = list(dict.fromkeys(args.seeds))
    data = load_images(args.data, size=32, limit=args.limit, seed=seeds[0])
    out = Path(args.out)
    options = {"lrs": args.lrs or DEFAULT_LRS, "search_epochs": args.search_epochs, "batch_size": args.batch_size,
               "after_crossing": args.after_crossing, "device": pick_device(args.device)}
    if args.sweep is not None:
        settings = args.sweep or SETTINGS
        result = sweep(data, args.epochs, out, seed=seeds[0], bias_lr=protocol["bias_lr"], settings=settings, **options)
        result["data"] = str(args.data)
        table = format_sweep(result)
        if set(settings) != set(SETTINGS):
            emit(result, args, [table, f"{', '.join(settings)}: runs stored in {out / 'sweep'}; "
                 "run again with --sweep alone (the same options) to write the table of all settings"])
            return 0
        write_json(out / "sweep.json", result)
        atomic_write_text(table + "\n", out / "sweep.md")
        save_figure(draw_sweep(result), out / "sweep.png")
        emit(result, args, [table, f"written: {out / 'sweep.json'}, {out / 'sweep.md'}, {out / 'sweep.png'}"])
        return 0
    result = relu_vs_tanh(data, args.epochs, seeds=seeds, activations=tuple(args.activations), protocol=protocol,
                          out=out, search_seed=args.search_seed, **options)
    result["data"] = str(args.data)
    if "speedup" in result:
        save_figure(draw_figure1(result), out / "figure1.png")
        write_json(out / "relu-vs-tanh.json", result)
        emit(result, args, [relu_vs_tanh_summary(result),
                            f"written: {out / 'figure1.png'}, {out / 'relu-vs-tanh.json'}"])
    else:
        print(f"{', '.join(args.activations)}: runs stored in {out / 'runs'}; run again with both activations "
              "(the same options) to draw figure1.png")
    return 0


def relu_vs_tanh_summary(result: dict) -> str:
    """The numbers of a relu-vs-tanh result as a few readable lines."""
    lines = []
    for activation in ("relu", "tanh"):
        search = result["search"][activation]
        where = "" if search.get("fixed") else " (inside the grid)" if search["inside"] else " (AT AN EDGE of the grid)"
        for run in result["runs"][activation]:
            cross = run["crossing_25"]
            reached = (f"25% after {cross['epoch']:.2f} epochs, {cross['seconds']:.1f} s" if cross else
                       f"not 25% within {console.plural(run['epochs'], 'epoch')} "
                       f"({run['points'][-1]['train_error']:.1f}% at the end)")
            lines.append(f"{activation:5s} lr {run['lr']:<6g}{where} seed {run['seed']}: {reached}")
    speed = result["speedup"]
    if speed.get("epochs"):
        bound = ">= " if speed.get("lower_bound") else ""
        spread = f" (seeds: {speed['min']:.1f}-{speed['max']:.1f}x)" if len(speed["per_seed"]) > 1 else ""
        lines.append(f"ReLU is {bound}{speed['epochs']:.1f}x faster in epochs{spread}, {bound}{speed['seconds']:.1f}x "
                     "in seconds (paper: about 6x)")
    else:
        lines.append(speed["note"])
    return "\n".join(lines)


def run_lrn(args: argparse.Namespace) -> int:
    check_options(args, {"epochs": 1, "batch_size": 1, "limit": 2, "seeds": 0}, ("lr",))
    if min(args.anneal) < 0 or sum(args.anneal) >= args.epochs:
        raise UserError(f"--anneal {args.anneal[0]} {args.anneal[1]}: both must be at least 0 and together fewer "
                        f"than --epochs ({args.epochs}), so that some epochs train at --lr")
    seeds = list(dict.fromkeys(args.seeds))
    train, test, test_set = load_train_test(args.data, args.test_data, args.holdout, args.limit)
    out = Path(args.out)
    result = run_lrn_experiment(train, test, args.epochs, seeds, out, pick_device(args.device), lr=args.lr,
                                batch_size=args.batch_size, anneal=tuple(args.anneal),
                                describe={"data": str(args.data), "test_set": test_set}, variants=args.variants)
    if result is None:
        print(f"{', '.join(args.variants)} normalisation: runs stored in {out / 'runs'}; run again with both "
              "variants (the same options) to compare them")
        return 0
    emit(result, args, [result["verdict"], f"written: {out / 'lrn.json'}, {out / 'lrn.md'}, {out / 'lrn.png'}"])
    return 0


def run_ablations(args: argparse.Namespace) -> int:
    if args.resume:
        raise UserError("--resume: ablations resume on their own; run the same command again")
    out = Path(args.out)
    train_args = {k: v for k, v in vars(args).items() if k not in ("experiment", "variants", "drop_layer")}
    base = config_from_args(argparse.Namespace(**train_args | {"out": str(out / "paper")}))
    if "paper" not in args.variants:
        args.variants.insert(0, "paper")  # the reference every difference is measured from
    result = run_variants(base, args.variants, out, args.drop_layer)
    write_json(out / "ablations.json", result)
    table = format_table(result)
    atomic_write_text(table + "\n\n" + result["note"] + "\n", out / "ablations.md")
    print(table, f"written: {out / 'ablations.json'}, {out / 'ablations.md'}", sep="\n")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.experiment == "ablations":  # train's --out, which has no default of its own; one writer
        args.out = args.out or "runs/ablations"
        with only_writer(Path(args.out), f"--out {args.out}"):
            return run_ablations(args)
    # relu-vs-tanh and lrn: processes may share OUT (--sweep, --variants); the run store holds each
    # run while it trains (one writer per run), and the files that assemble them are written whole
    command = {"relu-vs-tanh": run_relu_vs_tanh, "lrn": run_lrn}[args.experiment]
    args.json_out = sys.stdout  # --json -: standard output carries the JSON alone (| jq), all else to stderr
    with contextlib.redirect_stdout(sys.stderr) if getattr(args, "json", None) == "-" else contextlib.nullcontext():
        return command(args)
