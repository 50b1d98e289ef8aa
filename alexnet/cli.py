"""The `alexnet` command: a thin shell over functions a notebook could call the same way.

Each subcommand lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int``. Only the module of the subcommand being run is imported, so
``alexnet --help`` stays fast and one subcommand's dependencies never burden another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alexnet import __version__
from alexnet.errors import UserError

# name -> (module, one-line help). The order is the order `alexnet --help` lists them in.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("alexnet.train.cli", "train a network with the paper's recipe (section 5)"),
    "evaluate": ("alexnet.evaluate", "top-1/top-5 error with the centre crop or the paper's ten crops"),
    "predict": ("alexnet.predict", "the five most probable classes of images"),
    "prepare": ("alexnet.data.prepare", "prepare a dataset once: 256x256 centre patches in shards (section 2)"),
    "summary": ("alexnet.summary", "layer-by-layer shapes, neurons, parameters and multiply-adds"),
    "models": ("alexnet.registry", "list the named architectures"),
    "convert": ("alexnet.convert", "convert torchvision's published alexnet weights into a model file"),
    "bench": ("alexnet.bench", "measure data, model and training throughput against plain PyTorch"),
    "figures": ("alexnet.analysis.figures", "the paper's figures 3 and 4 and training curves from a run"),
    "experiment": ("alexnet.analysis.experiments", "the paper's experiments: relu-vs-tanh, ablations"),
    "report": ("alexnet.analysis.report", "one self-contained HTML page beside the paper's numbers"),
    "retrieval": ("alexnet.analysis.retrieval", "section 6.1: retrieval with short binary codes of fc7 features"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only ``command``'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012): train, evaluate and study "
        "the paper's network.",
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as err:
        print(f"alexnet {args.command}: error: {err}", file=sys.stderr)
        return 2
