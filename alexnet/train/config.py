"""One configuration object for a training run, with the paper's numbers as defaults (section 5): defaults <
preset < file (YAML, JSON or TOML) < command line (:func:`config_from_args`), saved as ``RUN_DIR/config.yaml``."""

import argparse
import dataclasses
import functools
import json
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alexnet.data.device_decode import DECODERS
from alexnet.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


SCHEDULES = ("plateau", "step", "cosine", "krizhevsky2012")
OPTIMIZERS = ("paper", "torch-sgd")
AMP_MODES = ("bf16", "fp16")
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}

# Settings applied before the file and the command line; "auto" (the default) is quick on a CPU, else full.
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},  # the paper's recipe
    # Learning on a 2-core CPU within about ten minutes; docs/training.md ("The quick preset") measures each
    # departure. amp only where bfloat16 is native (resolve).
    "quick": {"epochs": 5, "limit": 2560, "val_limit": 500, "batch_size": 32, "checkpoint_minutes": 5.0,
              "lr": 0.0025, "fc8_lr_mult": 0.2, "schedule": "cosine", "warmup_epochs": 0.0,
              "model_options": {"dropout": 0.0}, "amp": "bf16"},
    # The paper's recipe as fast as a GPU runs it (docs/speed.md); only the arithmetic's precision departs.
    "fast": {"amp": "bf16", "channels_last": True, "compile": True},
}
MAX_EPOCHS = 100_000  # epochs x steps must count in int64 and a run end in this era
MAX_IMAGES = 10**10  # images per epoch: far above any dataset


@dataclass(frozen=True)
class Allowed:
    """A setting's values beyond its type: bounds (``low``/``high`` inclusive), or ``choices``; ``note``."""

    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple | None = None
    note: str = ""

    def admits(self, value) -> bool:
        if value is None:
            return True  # the type says whether None is allowed
        if self.choices is not None:
            return value in self.choices
        return ((self.low is None or value >= self.low) and (self.high is None or value <= self.high)
                and (self.above is None or value > self.above) and (self.below is None or value < self.below))

    def describe(self, kind: str) -> str:
        """``kind`` with the allowed values, e.g. "a number in [0, 1)", "an integer >= 1"."""
        if self.choices is not None:
            return f"one of {', '.join(self.choices)}"
        low = f"[{self.low}" if self.low is not None else f"({self.above}" if self.above is not None else ""
        high = f"{self.high}]" if self.high is not None else f"{self.below})" if self.below is not None else ""
        if low and high:
            bounds = f" in {low}, {high}"
        else:  # no setting has an upper bound alone
            bounds = f" {'>=' if low[0] == '[' else '>'} {low[1:]}" if low else ""
        return f"{kind}{bounds}" + (f" ({self.note})" if self.note else "")


def setting(default, **allowed):
    """A field whose allowed values (:class:`Allowed`) stand next to its default; :func:`check` reads them."""
    return field(default=default, metadata={"allowed": Allowed(**allowed)})


@dataclass
class TrainConfig:
    """Every knob of a training run: the paper's defaults unless a comment says otherwise; see :func:`check`."""

    data: str = "imagenette"  # prepared folder, a dataset name, or "synthetic"
    arch: str = "alexnet"
    model_options: dict[str, Any] = field(default_factory=dict, metadata={"flag": "model-option"})  # build_model's
    out: str = "runs/alexnet"
    seed: int = setting(0, low=0, high=2**32 - 1)
    device: str | None = None  # None: cuda, else mps, else cpu
    workers: int | None = setting(None, low=0, high=1024, note="0: load in the training process")  # per process
    decode: str = setting("workers", choices=DECODERS)  # JPEGs decoded by the loader's workers or on the device
    # Upper bounds keep every number to what can run (a step count fits int64; a batch, memory).
    epochs: int = setting(90, low=1, high=MAX_EPOCHS)  # "roughly 90 cycles through the training set"
    batch_size: int = setting(128, low=1, high=2**20)  # global batch, split across data-parallel ranks
    lr: float = setting(0.01, above=0)
    momentum: float = setting(0.9, low=0, below=1)
    weight_decay: float = setting(0.0005, low=0)
    optimizer: str = setting("paper", choices=OPTIMIZERS)  # "paper": section 5's update rule
    schedule: str = setting("plateau", choices=SCHEDULES)
    patience: int = setting(5, low=1, high=MAX_EPOCHS)  # plateau; the paper gives no number
    max_reductions: int = setting(3, low=0, high=100)  # "reduced three times prior to termination"
    step_epochs: int = setting(30, low=1, high=MAX_EPOCHS)  # step schedule: divide by 10 every this many epochs
    warmup_epochs: float = setting(5.0, low=0, high=MAX_EPOCHS)  # cosine schedule: linear warm-up
    bias_lr_mult: float = setting(1.0, low=0)  # authors' code: 2 (epsB = 2 epsW); the paper: one rate
    bias_no_decay: bool = False  # authors' code: no weight decay on biases
    fc8_lr_mult: float = setting(1.0, above=0)  # the output layer's; the paper: one rate for all layers
    pca_std: float = setting(0.1, low=0, note="0: off")  # PCA colour augmentation, alpha ~ N(0, pca_std) (4.1)
    random_crop: bool = True  # random crops of the 256x256 images (section 4.1); False: the centre
    flip: bool = True  # horizontal reflections with probability 0.5 (section 4.1)
    limit: int | None = setting(None, low=1, high=MAX_IMAGES)  # training images per epoch (None: all)
    val_limit: int | None = setting(None, low=1, high=MAX_IMAGES)  # validation images (None: all)
    amp: str | None = setting(None, choices=AMP_MODES)  # None (float32, as the paper) | bf16 | fp16
    channels_last: bool | None = None  # None: on where it pays (CPU, CUDA); speed only, same function
    compile: bool = False
    deterministic: bool = False
    checkpoint_minutes: float = setting(30.0, low=0, high=10**6, note="0: after every step")
    model_parallel: bool = False  # section 3.2: the two towers on two devices
    log_every: int = setting(20, low=1, high=10**9)  # steps between reads of the running loss (the only host syncs)
    preset: str = setting("full", choices=tuple(PRESETS))

    def __post_init__(self):
        check(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _YAMLLoader(yaml.SafeLoader):
    """safe_load's loader that also reads ``1e-3`` as a number, as YAML 1.2 does (1.1 gives a string)."""


_YAMLLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                  re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                  list("-+0123456789"))
load_yaml = functools.partial(yaml.load, Loader=_YAMLLoader)  # plain data, never Python objects: a SafeLoader


def parse_problem(err: Exception) -> str:
    """A parser's error on one line: what is wrong and where (YAML's own message spans several)."""
    mark = getattr(err, "problem_mark", None)
    if getattr(err, "problem", None) and mark is not None:
        return f"{err.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(err).split())


CONFIG_READERS = {".yaml": load_yaml, ".yml": load_yaml, ".json": json.loads, ".toml": tomllib.loads}
MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few lines; anything larger is the wrong file
MAX_CONFIG_DEPTH = 8


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a YAML (.yaml/.yml), JSON (.json) or TOML (.toml) file, as a dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    reader = CONFIG_READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"--config {path}: not a configuration file; expected a name ending in "
                        f"{', '.join(CONFIG_READERS)}")
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"--config {path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; is it a configuration file?")
    try:
        values = reader(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"--config {path}: not UTF-8 text; is it a configuration file?") from None
    except (yaml.YAMLError, ValueError) as err:  # JSON's and TOML's errors are ValueErrors
        raise UserError(f"--config {path}: cannot parse: {parse_problem(err)}") from None
    except RecursionError:  # the parsers recurse once per level
        raise UserError(f"--config {path}: nested too deeply; is it a configuration file?") from None
    level = [values]
    for _ in range(MAX_CONFIG_DEPTH + 1):  # what lies deeper than the limit, without recursion
        level = [v for c in level if isinstance(c, (dict, list)) for v in (c.values() if isinstance(c, dict) else c)]
    if level:
        raise UserError(f"--config {path}: nested more than {MAX_CONFIG_DEPTH} levels deep; settings are flat "
                        "(model_options one level down)")
    if values is None:
        return {}
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise UserError(f"--config {path}: expected a mapping of setting names to values, "
                        f"got {type(values).__name__}")
    return {k.replace("-", "_"): v for k, v in values.items()}


def resolve(file_values: dict[str, Any], overrides: dict[str, Any], source: str) -> TrainConfig:
    """Defaults, then the preset, then the file, then the command line."""
    preset = overrides.get("preset") or file_values.get("preset") or "auto"
    device = overrides.get("device") or file_values.get("device")
    if preset == "auto":
        from alexnet.devices import pick_device

        preset = "quick" if pick_device(device).type == "cpu" else "full"
    if preset not in PRESETS:
        raise UserError(f"--preset {preset}: unknown; known: auto, {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[preset], "preset": preset}
    if preset == "quick" and not native_bf16(device):
        del values["amp"]
    values.update(file_values)
    options = file_values.get("model_options")
    if options is None or isinstance(options, dict):  # anything else is refused by check, by name
        values["model_options"] = {**PRESETS[preset].get("model_options", {}), **(options or {})}
    values.update({k: v for k, v in overrides.items() if v is not None and k != "preset"})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown := sorted(set(values) - known):
        raise UserError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return TrainConfig(**values)  # checked as it is made


def native_bf16(device: str | None) -> bool:
    """Whether the run's device computes bfloat16 natively: CUDA, or a CPU with AVX512-BF16 or AMX."""
    from alexnet.devices import pick_device

    kind = pick_device(device).type
    if kind != "cpu":
        return kind == "cuda"
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:  # not Linux: no way to tell, so float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def parse_model_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs (values read as YAML) as build_model options, typed later by :func:`check`."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--model-option {pair}: expected KEY=VALUE")
        try:
            options[key.replace("-", "_")] = load_yaml(value)
        except yaml.YAMLError as err:
            raise UserError(f"--model-option {_shown(pair)}: cannot read the value: {parse_problem(err)}") from None
        except RecursionError:  # the parser recurses once per level
            raise UserError(f"--model-option {_shown(key)}: the value is nested too deeply") from None
    return options


def resume_paths(resume: str) -> tuple[Path, Path]:
    """The run folder and checkpoint that ``--resume`` names: a run folder, or a file in its checkpoints/."""
    path = Path(resume)
    if not path.is_file():
        if not (path / "config.yaml").is_file():
            raise UserError(f"--resume {resume}: no config.yaml there; is it a run folder?")
        return path, path / "checkpoints" / "last.pt"
    run_dir = path.parent.parent
    if path.parent.name != "checkpoints" or not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {resume}: a file outside a run folder; a checkpoint resumes from "
                        "RUN_DIR/checkpoints/, beside RUN_DIR/config.yaml")
    return run_dir, path


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The configuration that ``args`` ask for (defaults < preset < file < command line)."""
    skip = {"config", "resume", "model_option", "command"}
    overrides = {k: v for k, v in vars(args).items() if k not in skip}
    file_values, source = {}, "command line"
    if args.resume:
        saved = resume_paths(args.resume)[0] / "config.yaml"
        file_values, source = read_config_file(saved), str(saved)
        overrides["out"] = str(saved.parent)
    if args.config:
        file_values = {**file_values, **read_config_file(args.config)}
        source = args.config
    if args.model_option:
        options = dict(file_values.get("model_options") or {})
        options.update(parse_model_options(args.model_option))
        file_values["model_options"] = options
    return resolve(file_values, overrides, source)


def _shown(value) -> str:
    text = "''" if value == "" else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is(value, kind: type) -> bool:
    """Strictly: a bool is not a number, NaN and infinity are not numbers, "3" is not an integer."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def check(config: TrainConfig) -> None:
    """Raise UserError naming the option and what it accepts for a setting of the wrong type or value."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        # The types it takes: (int, NoneType) for ``int | None``; (dict,) for ``dict[str, Any]``.
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (typing.get_origin(hint) or hint,)
        allowed = f.metadata.get("allowed", Allowed())
        if not any(_is(value, kind) for kind in kinds) or not allowed.admits(value):
            flag = f.metadata.get("flag", f.name.replace("_", "-"))
            raise UserError(f"--{flag} {_shown(value)}: expected {allowed.describe(_KINDS[kinds[0]])}")
    # The defaults need no registry, so that making them imports no torch (``--help`` stays quick).
    if config.model_options or config.arch != TrainConfig.arch:
        from alexnet.registry import checked_options

        config.model_options = checked_options(config.arch, config.model_options)
