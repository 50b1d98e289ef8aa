"""`alexnet bench data|model|train`: throughput against plain PyTorch, measured in the same run.

Each kind lives in its own module (``alexnet.bench.data`` ...) with ``add_arguments`` and ``run``.
"""

from __future__ import annotations

import importlib

KINDS = {
    "data": ("alexnet.bench.data", "input pipeline images/s against the pytorch/examples way"),
    "model": ("alexnet.bench.model", "forward+backward images/s per setting against plain PyTorch"),
    "train": ("alexnet.bench.train", "end-to-end training images/s against pytorch/examples' main.py"),
}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    for name, (module, help_text) in KINDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)


def run(args) -> int:
    return importlib.import_module(KINDS[args.bench_kind][0]).run(args)
