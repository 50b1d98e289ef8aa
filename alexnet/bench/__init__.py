"""`alexnet bench data|model|train`: throughput against plain PyTorch, measured in the same run."""

import importlib

KINDS = {
    "data": ("alexnet.bench.data", "input pipeline images/s against the pytorch/examples way"),
    "model": ("alexnet.bench.model", "forward+backward images/s per setting against plain PyTorch"),
    "train": ("alexnet.bench.train", "end-to-end training images/s against main.py's recipe re-created"),
}


def run(args) -> int:
    return importlib.import_module(KINDS[args.bench_kind][0]).run(args)
