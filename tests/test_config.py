"""`alexnet train`'s configuration: every setting has a type and an allowed range, checked however
the configuration was made (command line, file, preset, Python), with a one-line error naming the
option; config files are YAML, JSON or TOML by their suffix and hold plain data only."""

import json

import pytest

from alexnet.cli import build_parser, main
from alexnet.errors import UserError
from alexnet.train.config import TrainConfig, config_from_args


def parse(argv):
    return build_parser("train").parse_args(["train", *argv])


def refused(capsys, argv, command="train") -> str:
    """``alexnet COMMAND ARGV`` exits with status 2 and one line on stderr; that line."""
    assert main([command, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"alexnet {command}: error: "), err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--lr", "nan"], "--lr nan: expected a number > 0"),
    (["--lr", "inf"], "--lr inf: expected a number > 0"),
    (["--lr", "-0.01"], "--lr -0.01: expected a number > 0"),
    (["--momentum", "5"], "--momentum 5.0: expected a number in [0, 1)"),
    (["--momentum", "1"], "--momentum 1.0: expected a number in [0, 1)"),
    (["--weight-decay", "-1"], "--weight-decay -1.0: expected a number >= 0"),
    (["--patience", "-1"], "--patience -1: expected an integer in [1, 100000]"),
    (["--patience", "0"], "--patience 0: expected an integer in [1, 100000]"),
    (["--max-reductions", "-1"], "--max-reductions -1: expected an integer in [0, 100]"),
    (["--step-epochs", "0"], "--step-epochs 0: expected an integer in [1, 100000]"),
    (["--warmup-epochs", "-1"], "--warmup-epochs -1.0: expected a number in [0, 100000]"),
    (["--pca-std", "-1"], "--pca-std -1.0: expected a number >= 0 (0: off)"),
    (["--bias-lr-mult", "-2"], "--bias-lr-mult -2.0: expected a number >= 0"),
    (["--fc8-lr-mult", "0"], "--fc8-lr-mult 0.0: expected a number > 0"),
    (["--epochs", "0"], "--epochs 0: expected an integer in [1, 100000]"),
    (["--batch-size", "0"], "--batch-size 0: expected an integer in [1, 1048576]"),
    (["--workers", "-1"], "--workers -1: expected an integer in [0, 1024] (0: load in the training process)"),
    (["--workers", "-2"], "--workers -2: expected an integer in [0, 1024]"),
    (["--limit", "0"], "--limit 0: expected an integer in [1, 10000000000]"),
    (["--limit", "-1"], "--limit -1: expected an integer in [1, 10000000000]"),
    (["--val-limit", "0"], "--val-limit 0: expected an integer in [1, 10000000000]"),
    (["--seed", "-1"], "--seed -1: expected an integer in [0, 4294967295]"),
    (["--checkpoint-minutes", "-1"], "--checkpoint-minutes -1.0: expected a number in [0, 1000000]"),
    (["--log-every", "0"], "--log-every 0: expected an integer in [1, 1000000000]"),
    (["--model-option", "dropout=abc"], "--model-option dropout=abc: expected a number"),
    (["--model-option", "lrn=nope"], "--model-option lrn=nope: expected true or false"),
    (["--model-option", "num_classes=2.5"], "--model-option num_classes=2.5: expected an integer"),
    (["--model-option", "channels=[8,x]"], "--model-option channels=[8, 'x']: expected a list of integers"),
    (["--model-option", "dropout=1.5"], "--model-option: architecture 'alexnet': dropout must be in [0, 1)"),
    (["--model-option", "activation=sigmoid"], "--model-option: architecture 'alexnet': activation must be one of"),
    (["--model-option", "lrm=false"], "--model-option lrm: architecture 'alexnet' has no option lrm; its options "
                                      "are: num_classes, input_size"),
    (["--model-option", "lrn=[1"], "--model-option lrn=[1: cannot read the value"),
    # bounded to what can run (a step count in int64, a batch in memory, processes the system gives)
    (["--epochs", "99999999999999999999"], "--epochs 99999999999999999999: expected an integer in [1, 100000]"),
    (["--epochs", "100001"], "--epochs 100001: expected an integer in [1, 100000]"),
    (["-b", "99999999999"], "--batch-size 99999999999: expected an integer in [1, 1048576]"),
    (["-j", "100000"], "--workers 100000: expected an integer in [0, 1024]"),
    (["--limit", str(10**30)], f"--limit {10**30}: expected an integer in [1, 10000000000]"),
    (["--log-every", str(2**70)], f"--log-every {2**70}: expected an integer in [1, 1000000000]"),
    (["--model-option", "channels=" + "[" * 100_000 + "]" * 100_000], "--model-option channels: the value is "
                                                                     "nested too deeply"),
])
def test_a_value_out_of_range_is_refused_naming_the_option_and_the_allowed_values(capsys, argv, message):
    assert message in refused(capsys, ["--device", "cpu", *argv])


@pytest.mark.parametrize("text, message", [
    ('lr: "fast"\n', "--lr fast: expected a number > 0"),
    ("lr: .nan\n", "--lr nan: expected a number > 0"),
    ("batch_size: [16]\n", "--batch-size [16]: expected an integer in [1, 1048576]"),
    ("epochs: 2.5\n", "--epochs 2.5: expected an integer in [1, 100000]"),
    ("epochs: true\n", "--epochs True: expected an integer in [1, 100000]"),
    ("flip: maybe\n", "--flip maybe: expected true or false"),
    ("seed: 2020-01-01\n", "--seed 2020-01-01: expected an integer"),
    ("workers: -1\n", "--workers -1: expected an integer in [0, 1024]"),
    ("schedule: linear\n", "--schedule linear: expected one of plateau, step, cosine, krizhevsky2012"),
    ("model_options: [lrn]\n", "--model-option ['lrn']: expected a mapping"),
    ("model_options: {lrn: nope}\n", "--model-option lrn=nope: expected true or false"),
    ("lr: !!python/object/apply:os.system [echo hi]\n", "cannot parse: could not determine a constructor"),
    ("lr: 0.1\n  momentum: 0.5\n", "cannot parse: mapping values are not allowed here at line 2"),
    ("- lr\n", "expected a mapping of setting names to values, got list"),
])
def test_a_bad_value_in_a_config_file_is_refused_naming_the_setting(tmp_path, capsys, text, message):
    (tmp_path / "run.yaml").write_text(text)
    assert message in refused(capsys, ["--device", "cpu", "--config", str(tmp_path / "run.yaml")])


def test_config_files_are_yaml_json_or_toml_by_their_suffix_and_nothing_else(tmp_path, capsys):
    settings = {"lr": 0.001, "epochs": 7, "model_options": {"lrn": False, "dropout": 0.25}}
    (tmp_path / "a.yaml").write_text("lr: 1e-3\nepochs: 7\nmodel_options: {lrn: no, dropout: 0.25}\n")
    (tmp_path / "a.yml").write_text("lr: 0.001\nepochs: 7\nmodel_options:\n  lrn: false\n  dropout: 2.5e-1\n")
    (tmp_path / "a.json").write_text(json.dumps(settings))
    (tmp_path / "a.toml").write_text("lr = 1e-3\nepochs = 7\n[model_options]\nlrn = false\ndropout = 0.25\n")
    for name in ("a.yaml", "a.yml", "a.json", "a.toml"):
        c = config_from_args(parse(["--config", str(tmp_path / name), "--preset", "full"]))
        assert (c.lr, c.epochs, c.model_options) == (0.001, 7, settings["model_options"]), name
    (tmp_path / "a.ini").write_text("lr: 0.001\n")
    err = refused(capsys, ["--config", str(tmp_path / "a.ini")])
    assert f"--config {tmp_path / 'a.ini'}: not a configuration file; expected a name ending in " \
           ".yaml, .yml, .json, .toml" in err
    (tmp_path / "big.yaml").write_text("# padding\n" * 200_000)
    assert "larger than 1 MiB" in refused(capsys, ["--config", str(tmp_path / "big.yaml")])
    (tmp_path / "bin.json").write_bytes(b"\xff\xd8\xff\xe0 not text")
    assert "bin.json: not UTF-8 text" in refused(capsys, ["--config", str(tmp_path / "bin.json")])


@pytest.mark.parametrize("name, text", [
    ("deep.yaml", "a: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("nine.yaml", "model_options: " + "{a: " * 8 + "1" + "}" * 8 + "\n"),
])
def test_a_config_file_nested_too_deeply_is_refused_in_one_line_naming_the_file(tmp_path, capsys, name, text):
    """100,000 levels would exhaust the parsers' recursion (a RecursionError traceback); settings are
    flat, so more than 8 levels is the wrong file."""
    (tmp_path / name).write_text(text)
    err = refused(capsys, ["--device", "cpu", "--config", str(tmp_path / name)])
    assert f"--config {tmp_path / name}: nested" in err, err


def test_short_options_and_spellings_of_pytorch_examples_mean_the_long_ones():
    """As pytorch/examples' imagenet/main.py: -a, -b, -j, --learning-rate, --wd."""
    short = config_from_args(parse(["--device", "cpu", "-a", "alexnet-owt", "-b", "64", "-j", "3",
                                    "--learning-rate", "0.02", "--wd", "0.001"]))
    long = config_from_args(parse(["--device", "cpu", "--arch", "alexnet-owt", "--batch-size", "64", "--workers",
                                   "3", "--lr", "0.02", "--weight-decay", "0.001"]))
    assert short == long and (short.arch, short.batch_size, short.workers) == ("alexnet-owt", 64, 3)
    assert (short.lr, short.weight_decay) == (0.02, 0.001)


def test_values_at_the_edges_of_their_ranges_are_accepted():
    c = config_from_args(parse(["--device", "cpu", "--momentum", "0", "--weight-decay", "0", "--pca-std", "0",
                                "--patience", "1", "--max-reductions", "0", "--workers", "0", "--limit", "1",
                                "--val-limit", "1", "--checkpoint-minutes", "0", "--warmup-epochs", "0",
                                "--bias-lr-mult", "0", "--seed", "0", "--epochs", "1", "--lr", "1e-6"]))
    assert (c.momentum, c.weight_decay, c.pca_std, c.patience, c.max_reductions, c.workers, c.limit) == \
        (0, 0, 0, 1, 0, 0, 1)
    assert (c.val_limit, c.checkpoint_minutes, c.lr) == (1, 0, 1e-6)
    c = config_from_args(parse(["--device", "cpu", "--epochs", "100000", "--batch-size", str(2**20),
                                "--workers", "1024", "--limit", str(10**10), "--max-reductions", "100"]))
    assert (c.epochs, c.batch_size, c.workers, c.limit, c.max_reductions) == (100000, 2**20, 1024, 10**10, 100)


@pytest.mark.parametrize("written, read", [("true", True), ("false", False), ("yes", True), ("no", False),
                                           ("1", True), ("0", False), ("True", True), ("NO", False)])
def test_boolean_model_options_take_true_false_yes_no_1_0(written, read):
    c = config_from_args(parse(["--device", "cpu", "--preset", "full", "--model-option", f"lrn={written}"]))
    assert c.model_options == {"lrn": read} and type(c.model_options["lrn"]) is bool


def test_model_options_are_read_as_the_architecture_declares_them():
    c = config_from_args(parse(["--device", "cpu", "--model-option", "dropout=0", "--model-option", "fc_bias=1e-1",
                                "--model-option", "drop_layer=none", "--model-option", "channels=[8,16,16,16,16]",
                                "--model-option", "input_size=67", "--model-option", "fc_width=32"]))
    assert c.model_options == {"dropout": 0.0, "fc_bias": 0.1, "drop_layer": None, "channels": [8, 16, 16, 16, 16],
                               "input_size": 67, "fc_width": 32}
    assert type(c.model_options["dropout"]) is float


def test_the_same_rules_hold_for_the_ablations_a_python_caller_and_a_preset(capsys):
    err = refused(capsys, ["ablations", "--device", "cpu", "--momentum", "5"], command="experiment")
    assert "--momentum 5.0: expected a number in [0, 1)" in err
    with pytest.raises(UserError, match=r"--lr nan: expected a number > 0"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(UserError, match=r"--model-option lrn=nope"):
        TrainConfig(model_options={"lrn": "nope"})
    c = config_from_args(parse(["--preset", "quick", "--epochs", "2"]))  # the preset's own values pass
    assert (c.limit, c.epochs) == (2560, 2)


def test_bench_reads_model_options_by_the_same_rules(capsys):
    assert "--model-option lrn=nope: expected true or false" in refused(
        capsys, ["model", "--device", "cpu", "--model-option", "lrn=nope"], command="bench")
