"""``alexnet bench``'s options; light (neither torch nor numpy), so that ``--help`` comes at once."""

import argparse

from alexnet.bench.settings import DEFAULT_SETTING, DEFAULT_SETTINGS, SETTINGS
from alexnet.data.device_decode import DECODERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from alexnet.bench import KINDS

    sub = parser.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    for name, (_, help_text) in KINDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        {"data": bench_data, "model": bench_model, "train": bench_train}[name](p)


def _bench_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (128, section 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: one per core this process may use)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _bench_timing(parser)
    parser.add_argument("--keep-freed-memory", action="store_true", help="glibc malloc keeps freed memory for "
                        "reuse (speed.keep_freed_memory); process-wide, so it applies to the baseline too")
    parser.add_argument("--flush-denormal", action="store_true", help="flush denormal floats to zero on the CPU, "
                        "as alexnet train does (torch.set_flush_denormal); process-wide, so it applies to the "
                        "baseline too")


def _bench_timing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=None,
                        help="time each measurement for this long instead of a count of steps or images")
    parser.add_argument("--rows", metavar="FILE", default=None,
                        help="append each measured row to FILE as one JSON line the moment it exists")


def _bench_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="alexnet", help="registered architecture (alexnet models)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a build_model option, value in YAML (repeatable; as alexnet train), e.g. "
                        "--model-option input_size=67 --model-option num_classes=10 "
                        "--model-option fc_width=64 --model-option channels=[8,16,16,16,16]")


def bench_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="OUT", help="a prepared dataset folder")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader worker processes for both pipelines (default: one per core)")
    parser.add_argument("--source", metavar="DIR", help="the original images, for the usual way "
                        "(default: the source recorded in OUT/meta.json)")
    parser.add_argument("--images", type=int, default=4096,
                        help="images through the training pipeline (default: %(default)s)")
    parser.add_argument("--baseline-images", type=int, default=1024,
                        help="images through the usual way (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="default: %(default)s")
    parser.add_argument("--crop-size", type=int, default=227,
                        help="the training pipeline's crop (default: %(default)s, the paper's net)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    _bench_timing(parser)


def bench_model(parser: argparse.ArgumentParser) -> None:
    _bench_common(parser)
    _bench_model_options(parser)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per setting and round (default: 3 on cpu, 20 on cuda)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1; 3 with compile)")
    parser.add_argument("--warmup-seconds", type=float, default=0.0,
                        help="run plain this long before the first timing (a GPU raises its clocks)")
    parser.add_argument("--rounds", type=int, default=1, help="sweeps over all settings, in turn forwards and "
                        "backwards; each setting keeps its best round (interleaving evens out a busy machine)")
    parser.add_argument("--optimizer-step", action="store_true",
                        help="time forward + backward + SGD step (default: forward + backward)")
    parser.add_argument("--settings", nargs="+", default=None, metavar="NAME",
                        help=f"settings to measure (plain is always measured); of: {', '.join(SETTINGS)} "
                        f"(default: all that apply on cuda; on cpu: {', '.join(DEFAULT_SETTINGS['cpu'])})")
    parser.add_argument("--profile", metavar="NAME", nargs="+", default=None, help="after the timing, profile a "
                        "few steps of these settings and list where their time goes (the top kernels on cuda, "
                        "operators on cpu, by self time per step)")


def bench_train(parser: argparse.ArgumentParser) -> None:
    _bench_common(parser)
    parser.add_argument("--data", required=True, help="a prepared dataset folder (alexnet prepare), or a "
                        "dataset name as alexnet train takes (imagenette; prepared on first use)")
    parser.add_argument("--setting", default=None, help="our bench-model setting (default: "
                        f"{DEFAULT_SETTING['cpu']} on cpu, {DEFAULT_SETTING['cuda']} on cuda)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 cpu, 200 cuda)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 cpu; cuda: "
                        "2 x workers + 3, which also drains what the loader made during compilation)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="loader processes; several: ours "
                        "measured with each, the baseline with the first (default: one per core)")
    parser.add_argument("--decode", nargs="+", default=None, choices=DECODERS, metavar="WHERE",
                        help="where our pipeline decodes the JPEGs, measured in turn: workers (default) "
                        "and/or device (nvJPEG through torchvision on CUDA)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="read the dataset this many times over (default: as many as the steps need)")
    _bench_model_options(parser)
