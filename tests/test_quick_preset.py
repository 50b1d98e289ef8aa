"""The quick preset (what a CPU runs by default): the README's offline demo learns, and how the preset's
settings combine with the command line's."""

import json
import subprocess
import sys

import pytest

from alexnet.cli import build_parser
from alexnet.train import config as config_module
from alexnet.train.config import PRESETS, config_from_args
from tests import kit


def parse(argv):
    return build_parser("train").parse_args(["train", *argv])


@pytest.mark.slow  # the whole demo: about ten minutes on 2 cores
def test_the_offline_demo_learns_the_synthetic_classes_and_stays_there(tmp_path, capsys):
    run = tmp_path / "run"
    ran = kit.alexnet_command(capsys, "train", "--data", "synthetic", "--device", "cpu", "--out", run)
    assert ran.returncode == 0, ran.stderr
    errors = [json.loads(line)["val_top1_error"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(errors) == 5 and errors[0] < 30 and max(errors[1:]) < 5, errors  # guessing: 90%


def test_one_epoch_of_the_offline_demo_brings_the_validation_error_far_below_chance(tmp_path):
    # The README's offline demo as a user types it (the quick preset, the real network at 227x227),
    # cut to its first epoch of 80 steps: about a minute on 2 cores (9.8-20% measured; guessing: 90%).
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "alexnet", "train", "--data", "synthetic", "--device", "cpu",
                           "--epochs", "1", "--val-limit", "100", "--out", str(run)],
                          capture_output=True, text=True, timeout=kit.HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "quick preset" in done.stderr
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["val_top1_error"] < 45 and record["val_loss"] < 1.2, record  # chance: 90%, loss ln 10 = 2.3


def test_the_quick_presets_model_options_merge_with_the_command_lines():
    c = config_from_args(parse(["--preset", "quick", "--model-option", "input_size=67"]))
    assert c.model_options == {**PRESETS["quick"]["model_options"], "input_size": 67}
    c = config_from_args(parse(["--preset", "quick", "--model-option", "dropout=0.5"]))
    assert c.model_options == {"dropout": 0.5}


def test_the_quick_preset_uses_bfloat16_only_where_the_device_computes_it_natively(monkeypatch):
    monkeypatch.setattr(config_module, "native_bf16", lambda device: False)
    assert config_from_args(parse(["--preset", "quick"])).amp is None
    assert config_from_args(parse(["--preset", "quick", "--amp", "bf16"])).amp == "bf16"
    monkeypatch.setattr(config_module, "native_bf16", lambda device: True)
    assert config_from_args(parse(["--preset", "quick"])).amp == "bf16"
