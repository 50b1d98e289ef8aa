"""The `alexnet` command: each subcommand's options in ``alexnet.options.<name>`` (light), its work in a
module with ``run(args) -> int`` imported only after parsing, so that ``--help`` and argument errors come at once."""

import argparse
import difflib
import importlib
import sys

from alexnet import __version__, options
from alexnet.errors import UserError

# name -> (the module whose run(args) does its work, one-line help), in the order `alexnet --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("alexnet.train.cli", "train a network with the paper's recipe (section 5)"),
    "evaluate": ("alexnet.evaluate", "top-1/top-5 error with the centre crop or the paper's ten crops"),
    "predict": ("alexnet.predict", "the five most probable classes of images"),
    "prepare": ("alexnet.data.prepare", "prepare a dataset once: 256x256 centre patches in shards (section 2)"),
    "summary": ("alexnet.summary", "layer-by-layer shapes, neurons, parameters and multiply-adds"),
    "models": ("alexnet.registry", "list the named architectures"),
    "convert": ("alexnet.convert",
                "published weights as a model file: torchvision's, or Caffe's bvlc_alexnet (.onnx, .caffemodel)"),
    "export": ("alexnet.export", "a model file as ONNX, checked against onnxruntime"),
    "bench": ("alexnet.bench", "measure data, model and training throughput against plain PyTorch"),
    "figures": ("alexnet.analysis.figures", "the paper's figures 3 and 4 and training curves from a run"),
    "experiment": ("alexnet.analysis.experiments", "the paper's experiments: relu-vs-tanh, lrn, ablations"),
    "report": ("alexnet.analysis.report", "one self-contained HTML page beside the paper's numbers"),
    "retrieval": ("alexnet.analysis.retrieval", "section 6.1: retrieval with short binary codes of fc7 features"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only ``command``'s options are added (``alexnet.options.<command>``)."""
    parser = argparse.ArgumentParser(prog="alexnet", description="AlexNet (Krizhevsky, Sutskever, Hinton, "
                                     "NIPS 2012): train, evaluate and study the paper's network.")
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.subcommands = {}
    for name, (_, help_text) in COMMANDS.items():
        p = parser.subcommands[name] = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            getattr(options, name)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args, extras = parser.parse_known_args(argv)
    if extras:  # reported by the subcommand's parser (its usage), with the nearest option for a typo
        command_parser = parser.subcommands.get(args.command, parser)
        known = [o for action in command_parser._actions for o in action.option_strings if o.startswith("--")]
        hints = [f"{e} -> {close[0]}?" for e in extras if e.startswith("--")
                 for close in [difflib.get_close_matches(e.split("=")[0], known, n=1)] if close]
        command_parser.error(f"unrecognized arguments: {' '.join(extras)}"
                             + (f" (did you mean: {', '.join(hints)})" if hints else ""))
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
