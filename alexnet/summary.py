"""`alexnet summary`: per layer its output shape, neurons, parameters and multiply-adds; for the paper's network,
section 3.5's maps (55x55x96 ... 6x6x256), neurons per layer and 60,965,224 parameters."""

import json

import torch
from torch import nn

from alexnet import registry
from alexnet.lrn import LocalResponseNorm

SHOWN = (nn.Conv2d, nn.Linear, LocalResponseNorm, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
ERRATA = {("alexnet", "conv1"): "the paper prints 253,440 neurons: an erratum for 55x55x96 = 290,400"}


def summarize(model: nn.Module, input_size: int | None = None) -> dict:
    """Rows for the layers of ``model`` on one ``input_size`` image, and the totals."""
    size = input_size or model.input_size
    rows, labels = [], {}
    for name, module in model.named_modules():
        if isinstance(module, SHOWN):
            short = name.rsplit(".", 1)[-1]
            labels[module] = name if short.isdigit() else short

    def record(module, inputs, out):
        shape = list(out.shape[1:])
        neurons = out[0].numel() if isinstance(module, (nn.Conv2d, nn.Linear)) else 0
        rows.append({
            "layer": labels[module], "type": type(module).__name__,
            # the paper's notation: height x width x maps
            "output": "x".join(map(str, shape[1:] + shape[:1])) if len(shape) == 3 else str(shape[0]),
            "neurons": neurons,
            "parameters": sum(p.numel() for p in module.parameters()),
            "multiply_adds": neurons * module.weight[0].numel() if neurons else 0,  # one per weight of its filter
            "note": ERRATA.get((getattr(model, "arch", None), labels[module]), ""),
        })

    hooks = [module.register_forward_hook(record) for module in labels]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    totals = {key: sum(r[key] for r in rows) for key in ("neurons", "parameters", "multiply_adds")}
    totals["parameters"] = sum(p.numel() for p in model.parameters())
    return {"arch": getattr(model, "arch", type(model).__name__), "input": f"{size}x{size}x3",
            "layers": rows, "totals": totals}


def format_table(summary: dict) -> str:
    head = f"{'layer':12s} {'type':18s} {'output':>12s} {'neurons':>10s} {'parameters':>12s} {'mult-adds':>15s}"
    lines = [f"{summary['arch']} on a {summary['input']} input", head, "-" * len(head)]
    for r in summary["layers"]:
        neurons = f"{r['neurons']:,}" if r["neurons"] else ""
        line = (f"{r['layer']:12s} {r['type']:18s} {r['output']:>12s} {neurons:>10s} "
                f"{r['parameters']:>12,} {r['multiply_adds']:>15,}")
        lines.append(line + (f"  * {r['note']}" if r["note"] else ""))
    t = summary["totals"]
    lines += ["-" * len(head),
              f"{'total':12s} {'':18s} {'':>12s} {t['neurons']:>10,} {t['parameters']:>12,} {t['multiply_adds']:>15,}"]
    return "\n".join(lines)


def run(args) -> int:
    if args.list:  # kept for scripts that use it: the same as `alexnet models`
        return registry.run(args)
    options = {} if args.input_size is None or args.arch == "alexnet-owt" else {"input_size": args.input_size}
    summary = summarize(registry.build_model(args.arch, **options), args.input_size)
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    return 0
