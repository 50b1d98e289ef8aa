"""The quick preset (what a CPU runs by default): how its settings combine with the command line's."""

from alexnet.cli import build_parser
from alexnet.train import config as config_module
from alexnet.train.config import PRESETS, config_from_args


def parse(argv):
    return build_parser("train").parse_args(["train", *argv])


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
