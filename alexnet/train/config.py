"""One configuration object for a training run, with the paper's numbers as defaults.

Paper section 5: batch 128, momentum 0.9, weight decay 0.0005, learning rate 0.01 divided
by 10 when the validation error stops improving (three times), about 90 epochs. A file
(YAML or TOML) overrides the defaults; command-line options override the file. The run
saves the configuration it actually used as ``RUN_DIR/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alexnet.errors import UserError
from alexnet.io import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class TrainConfig:
    """Every knob of a training run. Defaults are the paper's unless the comment says otherwise."""

    data: str = "imagenette"  # prepared folder, a dataset name, or "synthetic"
    arch: str = "alexnet"
    model_options: dict[str, Any] = field(default_factory=dict)  # passed to build_model
    out: str = "runs/alexnet"
    seed: int = 0
    device: str | None = None  # None: cuda, else mps, else cpu
    workers: int | None = None  # loader processes per training process; None: the cores / local processes
    decode: str = "workers"  # JPEGs decoded by the loader's workers, or on the device (nvJPEG on CUDA)
    epochs: int = 90  # "roughly 90 cycles through the training set"
    batch_size: int = 128  # global batch, split across data-parallel ranks
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005
    optimizer: str = "paper"  # "paper": section 5's update rule; "torch-sgd": torch.optim.SGD
    schedule: str = "plateau"  # plateau | step | cosine | krizhevsky2012
    patience: int = 5  # epochs without improvement before a reduction (the paper gives no number)
    max_reductions: int = 3  # "reduced three times prior to termination"
    step_epochs: int = 30  # step schedule: divide by 10 every this many epochs
    warmup_epochs: float = 5.0  # cosine schedule: linear warm-up
    bias_lr_mult: float = 1.0  # authors' code: 2 (epsB = 2 epsW); the paper: one rate
    bias_no_decay: bool = False  # authors' code: no weight decay on biases
    fc8_lr_mult: float = 1.0  # the output layer's rate multiplier; the paper: one rate for all layers
    pca_std: float = 0.1  # PCA colour augmentation: alpha ~ N(0, pca_std) (section 4.1); 0: off
    random_crop: bool = True  # random crops of the 256x256 images (section 4.1); False: the centre
    flip: bool = True  # horizontal reflections with probability 0.5 (section 4.1)
    limit: int | None = None  # training images per epoch (None: all)
    val_limit: int | None = None  # validation images (None: all)
    amp: str | None = None  # None (float32, as the paper) | bf16 | fp16
    channels_last: bool | None = None  # None: on where it pays (CPU, CUDA); speed only, same function
    compile: bool = False
    deterministic: bool = False
    checkpoint_minutes: float = 30.0  # also after every epoch; 0: after every step
    model_parallel: bool = False  # section 3.2: the two towers on two devices
    log_every: int = 20  # steps between reads of the running loss (the only host syncs)
    preset: str = "full"  # full: the settings above; quick: PRESETS["quick"] (see resolve)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "configuration") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{source}: unknown setting(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        return cls(**values)


SCHEDULES = ("plateau", "step", "cosine", "krizhevsky2012")
OPTIMIZERS = ("paper", "torch-sgd")
AMP_MODES = ("bf16", "fp16")
DECODERS = ("workers", "device")  # as alexnet.data.loader.DECODERS

# Named presets: settings applied before the file and the command line, so both still win.
# "auto" (the command line's default) is "quick" when the run's device is the CPU, else "full".
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},  # the paper's recipe
    # A laptop CPU shows learning within about ten minutes: 2,560 images per epoch at batch 32,
    # 500 validation images, 5 epochs. The update rule and schedule stay the paper's.
    # fc8 learns at 1/20 of the rate: with 10 classes instead of 1000 the paper's rate is unstable
    # for the output layer (docs/training.md, "The quick preset").
    "quick": {"epochs": 5, "limit": 2560, "val_limit": 500, "batch_size": 32, "checkpoint_minutes": 5.0,
              "fc8_lr_mult": 0.05},
    # The paper's recipe as fast as a GPU runs it (docs/speed.md): bfloat16 autocast (LRN stays
    # float32), channels-last memory and torch.compile. Only the arithmetic's precision departs.
    "fast": {"amp": "bf16", "channels_last": True, "compile": True},
}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a YAML (.yaml/.yml) or TOML (.toml) file, as a dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise UserError(f"--config {path}: cannot parse: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a mapping of settings, got {type(values).__name__}")
    return {k.replace("-", "_"): v for k, v in values.items()}


def resolve(file_values: dict[str, Any], overrides: dict[str, Any], source: str) -> TrainConfig:
    """Defaults, then the preset, then the file, then the command line."""
    preset = overrides.get("preset") or file_values.get("preset") or "auto"
    if preset == "auto":
        from alexnet.train.distributed import pick_device

        device = overrides.get("device") or file_values.get("device")
        preset = "quick" if pick_device(device).type == "cpu" else "full"
    if preset not in PRESETS:
        raise UserError(f"--preset {preset}: unknown; known: auto, {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[preset], "preset": preset}
    values.update(file_values)
    values.update({k: v for k, v in overrides.items() if v is not None and k != "preset"})
    config = TrainConfig.from_dict(values, source)
    check(config)
    return config


def check(config: TrainConfig) -> None:
    """Reject settings that cannot work, naming the option."""
    choices = {"schedule": SCHEDULES, "optimizer": OPTIMIZERS, "decode": DECODERS}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise UserError(f"--{name} {getattr(config, name)}: expected one of {', '.join(allowed)}")
    if config.amp is not None and config.amp not in AMP_MODES:
        raise UserError(f"--amp {config.amp}: expected one of {', '.join(AMP_MODES)}")
    positive = ("epochs", "batch_size", "lr", "log_every", "fc8_lr_mult")
    for name in positive:
        if getattr(config, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")
    if config.checkpoint_minutes < 0:
        raise UserError(f"--checkpoint-minutes must be >= 0, got {config.checkpoint_minutes}")


def save_config(config: TrainConfig, path: Path) -> None:
    atomic_write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), path)
