"""The `alexnet` command line: help and argument errors at once, progress on a terminal and in a log."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet.cli import COMMANDS

HEAVY = ("torch", "numpy", "matplotlib")


def imports_after(argvs: list[list[str]]) -> list[dict]:
    """Run ``alexnet.cli.main`` on each argv in a fresh interpreter; per argv, its exit status and
    which of HEAVY it had imported by then."""
    code = f"""
import json, sys
from alexnet.cli import main
for argv in {argvs!r}:
    try:
        status = main(argv)
    except SystemExit as exit:
        status = exit.code
    print(json.dumps({{"argv": argv, "status": status, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"argv"')]


def test_every_subcommands_help_comes_before_torch_numpy_and_matplotlib_are_imported():
    argvs = [[name, "--help"] for name in COMMANDS]
    argvs += [["bench", kind, "--help"] for kind in ("data", "model", "train")]
    argvs += [["experiment", which, "--help"] for which in ("relu-vs-tanh", "ablations")]
    results = imports_after(argvs)
    assert [r["argv"] for r in results] == argvs
    for r in results:
        assert r["status"] == 0 and r["heavy"] == [], r


def test_an_argument_error_exits_2_before_torch_is_imported():
    argvs = [
        ["train", "--lr"],  # an option without its value
        ["train", "--no-such-option"],
        ["evaluate", "model.pt"],  # --data missing
        ["bench", "model", "--steps", "many"],
        ["prepare", "src", "out", "--format", "png"],
    ]
    results = imports_after(argvs)
    assert [r["argv"] for r in results] == argvs
    for r in results:
        assert r["status"] == 2 and r["heavy"] == [], r


@pytest.mark.parametrize("argv, said", [
    (["train", "--bach-size", "8"], "alexnet train: error: unrecognized arguments: --bach-size 8 "
                                    "(did you mean: --bach-size -> --batch-size?)"),
    (["prepare", "src", "out", "--sise=3"], "alexnet prepare: error: unrecognized arguments: --sise=3 "
                                            "(did you mean: --sise=3 -> --size?)"),
    (["train", "stray"], "alexnet train: error: unrecognized arguments: stray"),
])
def test_an_unknown_argument_is_reported_with_its_commands_usage_and_the_nearest_option(capsys, argv, said):
    from alexnet.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith(f"usage: alexnet {argv[0]} ")
    assert err.rstrip().endswith(said)


def test_trains_help_still_quotes_the_papers_defaults(capsys):
    from alexnet.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.01, the paper's)" in out and "(default: 128, the paper's)" in out


# --- progress: a bar on a terminal, plain lines in a log ---------------------------------------------


class Terminal(io.StringIO):
    """Standard error as a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def every_update(monkeypatch):
    """In a log, a progress line after every update (instead of every LOG_SECONDS)."""
    from alexnet import console

    monkeypatch.setattr(console, "LOG_UPDATES", 1)


def test_evaluate_writes_progress_lines_into_a_log(tmp_path, capsys, every_update):
    from alexnet import save_model
    from alexnet.cli import main
    from alexnet.data.dataset import PreparedDataset
    from tests.kit import make_prepared, tiny_alexnet

    data = make_prepared(tmp_path, per_class=(3, 2), encoding="raw")  # 6 validation images
    train = PreparedDataset(data, "train")
    save_model(tiny_alexnet(3), tmp_path / "cnn.pt", class_names=train.class_names,
               mean=torch.from_numpy(train.mean))
    assert main(["evaluate", str(tmp_path / "cnn.pt"), "--data", str(data), "--crops", "center",
                 "--batch-size", "2", "--device", "cpu", "--workers", "1"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "evaluate (center): 2/6 img (33%)", "evaluate (center): 4/6 img (67%)", "evaluate (center): 6/6 img (100%)"]
    assert re.search(r"img/s, \d\d:\d\d left, top1_error \d+\.\d\d%$", lines[0])
    assert "\r" not in "".join(lines)


def train_argv(run: Path, *extra: str) -> list[str]:
    return ["train", "--data", "synthetic", "--arch", "tiny-test", "--model-option", "num_classes=7",
            "--out", str(run), "--epochs", "1", "--batch-size", "8", "--limit", "64", "--val-limit", "16",
            "--device", "cpu", "--workers", "1", "--log-every", "100", *extra]


def test_trains_bar_counts_whole_images_and_shows_the_loss_of_an_epoch_shorter_than_log_every(
        tmp_path, monkeypatch, tiny_net):
    from alexnet.cli import main

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert main(train_argv(tmp_path / "run")) == 0
    err = sys.stderr.getvalue()
    assert "7 classes, 1 epoch of 8 steps at global batch 8" in err
    frames = re.findall(r"\repoch 1/1: +\d+%[^\r\n]*", err)  # the bar's
    counts = [re.search(r"\| (\S+)/(\S+) \[", frame).groups() for frame in frames]
    assert counts and all(done.isdigit() and total == "64" for done, total in counts)
    # read at the first step (redrawn then, whatever the clock), though 100 steps is --log-every
    assert any("loss=" in frame and "lr=0.002" in frame for frame in frames)


def test_train_in_a_log_writes_progress_lines_and_a_resumed_run_says_where_it_continues(
        tmp_path, capsys, monkeypatch, every_update, tiny_net):
    from alexnet.cli import main

    run = tmp_path / "run"
    monkeypatch.setenv("TINY_SIGNAL", "SIGTERM@3")  # a stop request during the third step
    assert main(train_argv(run)) == 128 + 15
    err = capsys.readouterr().err
    assert "epoch 1/1: 8/64 img (12%)" in err and "loss " in err and "\r" not in err
    monkeypatch.delenv("TINY_SIGNAL")

    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"resuming from epoch 1, step 4 of 8 ({run}/checkpoints/last.pt)" in err
    assert "epoch 1/1: 32/64 img (50%)" in err

    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"{run} is finished: all 1 epoch trained")
    assert "training tiny-test" not in err
    assert f"{run}/checkpoints/best.pt" in err and f"{run}/metrics.jsonl" in err


def test_prepare_writes_progress_lines_into_a_log(tmp_path, capsys, every_update):
    from alexnet.cli import main
    from tests.kit import make_prepared

    make_prepared(tmp_path, per_class=(3, 2))  # the image folder tmp_path/images: 9 training and 6 validation images
    assert main(["prepare", str(tmp_path / "images"), str(tmp_path / "again"), "--size", "80",
                 "--format", "raw", "--workers", "1"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("prepare: ")]
    assert lines and lines[-1].startswith("prepare: 15/15 img (100%), ")


def test_in_a_log_a_progress_line_comes_every_log_seconds_with_rate_and_time_left(monkeypatch):
    from alexnet import console

    clock = iter([0.0, 10.0, 29.0, 31.0, 40.0, 50.0, 70.0])  # start, each of 5 updates, the close
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    log = io.StringIO()
    bar = console.progress(total=100, desc="work", unit="img", stream=log)
    for _ in range(5):
        bar.update(10)
    bar.set_postfix(loss="1.5")
    bar.close()
    assert log.getvalue().splitlines() == [
        "work: 30/100 img (30%), 1.0 img/s, 01:12 left",  # at 31 s, the first past 30 s
        "work: 50/100 img (50%), 0.7 img/s, 01:10 left, loss 1.5",  # the close (50 s: too soon for a line)
    ]
