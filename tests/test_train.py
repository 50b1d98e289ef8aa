"""`alexnet train`: one epoch end to end, what a run folder holds, configuration, failures."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import alexnet.train.loop as loop
from alexnet import load_model
from alexnet.cli import build_parser
from alexnet.errors import UserError
from alexnet.train import checkpoint
from alexnet.train.config import PRESETS, TrainConfig, check, config_from_args
from alexnet.train.data import SyntheticImages
from tests import kit

METRIC_KEYS = {"epoch", "train_loss", "train_top1_error", "train_top5_error", "val_loss", "val_top1_error",
               "val_top5_error", "lr", "images_per_s", "data_wait_share", "seconds"}
CHECKPOINT_KEYS = {"model", "arch", "options", "class_names", "optimizer", "scheduler", "scaler", "epoch",
                   "position", "rng", "config"}
MODEL_FILE_KEYS = {"model", "arch", "options", "class_names", "mean", "epoch", "config"}  # best.pt: no optimizer
pytestmark = pytest.mark.usefixtures("tiny_net")  # most tests train tiny-test (tests/kit.py's TinyNet)


def tiny_config(tmp_path, **changes) -> TrainConfig:
    values = dict(data="synthetic", arch="tiny-test", out=str(tmp_path / "run"), epochs=1, batch_size=8, limit=64, val_limit=37,
                  device="cpu", log_every=2, model_options={"num_classes": 7})
    values.update(changes)
    return TrainConfig(**values)


def parse(argv):
    return build_parser("train").parse_args(["train", *argv])


def test_one_epoch_writes_config_metrics_tensorboard_and_checkpoints(tmp_path):
    config = tiny_config(tmp_path)
    assert loop.train(config) == 0
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text()) == config.to_dict()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) == METRIC_KEYS and record["epoch"] == 1 and record["lr"] == 0.01
    assert 0.0 <= record["data_wait_share"] <= 1.0
    for key in METRIC_KEYS - {"epoch", "lr", "images_per_s", "data_wait_share", "seconds", "train_loss", "val_loss"}:
        assert 0 <= record[key] <= 100
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    last, best = (torch.load(run / "checkpoints" / name, weights_only=True) for name in ("last.pt", "best.pt"))
    assert CHECKPOINT_KEYS <= set(last)
    assert (last["epoch"], last["position"]) == (1, 0)
    assert set(last["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert MODEL_FILE_KEYS <= set(best) and not set(best) & (CHECKPOINT_KEYS - MODEL_FILE_KEYS)
    for ck in (last, best):
        assert ck["arch"] == "tiny-test" and ck["options"]["num_classes"] == 7
        assert ck["class_names"] == [f"class{i}" for i in range(7)]
        assert ck["epoch"] == 1 and ck["config"] == config.to_dict()
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


def test_validation_metrics_are_the_trained_weights_errors_on_every_validation_image(tmp_path):
    config = tiny_config(tmp_path)
    loop.train(config)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    net = kit.TinyNet(7)
    net.load_state_dict(torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"])
    net.eval()
    val = SyntheticImages(37, 7, 16, config.seed, "val", torch.device("cpu"))
    images, labels, _ = val.batch(np.arange(37))
    logits = net(images.float() - 127.5)
    top5 = logits.topk(5, dim=1).indices
    assert record["val_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert record["val_top1_error"] == pytest.approx(100 * (top5[:, 0] != labels).sum().item() / 37)
    assert record["val_top5_error"] == pytest.approx(100 * (~(top5 == labels[:, None]).any(1)).sum().item() / 37)


def test_training_on_synthetic_classes_lowers_the_loss(tmp_path):
    loop.train(tiny_config(tmp_path, epochs=3, model_options={"num_classes": 4, "dropout": 0.0}))
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < 0.8 * records[0]["train_loss"]
    assert records[-1]["val_top1_error"] < 25  # chance: 75%


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(tmp_path, epochs=2, checkpoint_minutes=0,
                         model_options={"num_classes": 7, "nan_after": 11})
    with pytest.raises(loop.NonFiniteLoss, match=r"step 4 of epoch 2 \(global step 12\)"):
        loop.train(config)
    ck = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert (ck["epoch"], ck["position"]) == (1, 3 * 8)
    assert all(torch.isfinite(t).all() for t in ck["model"].values())


def test_settings_come_from_defaults_then_file_then_command_line(tmp_path):
    (tmp_path / "a.yaml").write_text("lr: 0.02\nepochs: 5\nmodel_options: {dropout: 0.1}\n")
    (tmp_path / "a.toml").write_text('lr = 0.03\nschedule = "cosine"\n')
    c = config_from_args(parse(["--config", str(tmp_path / "a.yaml"), "--epochs", "7",
                                "--model-option", "lrn=false", "--preset", "full"]))
    assert (c.lr, c.epochs, c.batch_size, c.momentum) == (0.02, 7, 128, 0.9)
    assert c.model_options == {"dropout": 0.1, "lrn": False}
    c = config_from_args(parse(["--config", str(tmp_path / "a.toml"), "--preset", "full"]))
    assert (c.lr, c.schedule, c.weight_decay) == (0.03, "cosine", 0.0005)


def test_paper_defaults():
    c = config_from_args(parse(["--preset", "full"]))
    assert (c.batch_size, c.lr, c.momentum, c.weight_decay, c.epochs, c.max_reductions) == \
        (128, 0.01, 0.9, 0.0005, 90, 3)
    assert (c.optimizer, c.schedule, c.amp, c.bias_lr_mult, c.bias_no_decay) == \
        ("paper", "plateau", None, 1.0, False)


def test_the_quick_preset_is_overridden_by_the_command_line():
    c = config_from_args(parse(["--preset", "quick", "--epochs", "2"]))
    assert c.epochs == 2 and c.limit == PRESETS["quick"]["limit"] and c.preset == "quick"


def test_the_default_preset_is_quick_on_the_cpu_and_the_papers_recipe_on_a_gpu(monkeypatch):
    assert config_from_args(parse(["--device", "cpu"])).preset == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    c = config_from_args(parse([]))
    assert (c.preset, c.epochs, c.batch_size, c.limit) == ("full", 90, 128, None)


@pytest.mark.parametrize("argv,message", [
    (["--config", "nope.yaml"], "--config nope.yaml: no such file"),
    (["--lr", "0"], "--lr 0.0: expected a number > 0"),
    (["--model-option", "lrn"], "--model-option lrn: expected KEY=VALUE"),
])
def test_bad_settings_name_the_option(argv, message):
    with pytest.raises(UserError, match=message):
        config_from_args(parse(argv))


def test_unknown_file_settings_are_named(tmp_path):
    (tmp_path / "b.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown setting.*learning_rate"):
        config_from_args(parse(["--config", str(tmp_path / "b.yaml")]))


def test_help_marks_every_departure_from_the_paper(capsys):
    with pytest.raises(SystemExit):
        parse(["--help"])
    flat = " ".join(capsys.readouterr().out.split())
    for option in ("--optimizer", "--amp", "--limit", "--bias-no-decay", "--bias-lr-mult", "--preset"):
        section = flat.split(option + " ", 2)[-1][:400]
        assert "[departs" in section, option
    assert "the paper gives no number" in flat


SMALL_ALEXNET = {"num_classes": 5, "input_size": 67, "channels": [8, 16, 16, 16, 16], "fc_width": 32, "dropout": 0.0}


def test_the_papers_network_trains_and_its_checkpoint_loads_with_load_model(tmp_path):
    loop.train(tiny_config(tmp_path, arch="alexnet", model_options=SMALL_ALEXNET))
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    model = load_model(path)
    assert model.class_names == [f"class{i}" for i in range(5)] and model.options["input_size"] == 67
    saved = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)


def test_model_parallel_towers_train_like_the_one_device_network(tmp_path):
    """Section 3.2's two-device layout (here both 'devices' are the CPU) follows the same path."""
    loop.train(tiny_config(tmp_path / "one", arch="alexnet", model_options=SMALL_ALEXNET))
    loop.train(tiny_config(tmp_path / "two", arch="alexnet", model_options=SMALL_ALEXNET, model_parallel=True))
    one, two = (torch.load(tmp_path / d / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
                for d in ("one", "two"))
    assert one.keys() == two.keys()  # checkpoints hold the one-device layout
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return kit.make_prepared(tmp_path_factory.mktemp("data"))


def test_training_on_a_prepared_dataset_uses_its_class_names_crops_and_mean(tmp_path, prepared):
    config = tiny_config(tmp_path, data=str(prepared), arch="alexnet", limit=None, val_limit=None, workers=0,
                         epochs=1, model_options={k: v for k, v in SMALL_ALEXNET.items() if k != "num_classes"})
    assert loop.train(config) == 0
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["val_top1_error"] in {100 * k / 12 for k in range(13)}  # 12 validation images, each once
    model = load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert model.class_names == ["c0", "c1", "c2"] and model.options["num_classes"] == 3
    ck = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert torch.equal(ck["mean"], torch.from_numpy(np.load(prepared / "mean.npy")))  # predicts on its own
    assert torch.equal(model.mean, ck["mean"])


def test_a_named_dataset_offline_fails_at_once_offering_synthetic_and_a_path(tmp_path, monkeypatch, capsys):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    from alexnet.cli import main

    assert main(["train", "--data", "imagenette", "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--data imagenette" in err and "--data synthetic" in err and "--data PATH" in err
    assert not (tmp_path / "run").exists()


def test_a_new_run_refuses_a_folder_that_holds_one_and_offers_resume(tmp_path):
    loop.train(tiny_config(tmp_path))
    with pytest.raises(UserError, match="holds a run already.*alexnet train --resume"):
        loop.train(tiny_config(tmp_path))


@pytest.mark.parametrize("switches, centred, mirrored, noisy", [
    ({}, False, True, True),
    ({"random_crop": False, "flip": False, "pca_std": 0.0}, True, False, False),
])
def test_section_4_1_augmentations_can_each_be_switched_off(tmp_path, prepared, switches, centred, mirrored, noisy):
    from types import SimpleNamespace

    from alexnet.train.data import prepared_data
    from alexnet.train.distributed import Context

    config = tiny_config(tmp_path, data=str(prepared), workers=0, batch_size=16, **switches)
    network = SimpleNamespace(input_size=64, normalization="mean_image")
    data = prepared_data(config, Context(), network, ["c0", "c1", "c2"])
    _, _, windows = next(iter(data.train_batches(0, 0)))
    centre = (80 - 64) // 2
    assert bool((windows[:, :2] == centre).all()) == centred
    assert bool(windows[:, 2].any()) == mirrored
    assert (data.transform.pca_std > 0) == noisy


def test_decoding_on_the_device_trains_the_same_network_as_decoding_in_workers(tmp_path, prepared, fake_torchvision):
    """With a decoder that matches the workers' (libjpeg), --decode device gives the same crops in
    the same order, so the same weights; torchvision's nvJPEG runs on the GPU only (gpu.sh)."""
    calls = fake_torchvision
    options = dict(data=str(prepared), arch="alexnet", limit=None, val_limit=None, workers=0, epochs=1,
                   batch_size=4, model_options={k: v for k, v in SMALL_ALEXNET.items() if k != "num_classes"})
    weights = {}
    for decode in ("workers", "device"):
        assert loop.train(tiny_config(tmp_path / decode, decode=decode, **options)) == 0
        weights[decode] = torch.load(tmp_path / decode / "run" / "checkpoints" / "last.pt",
                                     weights_only=True)["model"]
    assert calls and all(torch.equal(weights["workers"][k], weights["device"][k]) for k in weights["workers"])
    with pytest.raises(UserError, match="--decode gpu: expected one of workers, device"):
        check(TrainConfig(decode="gpu"))


def test_a_training_step_reads_nothing_from_the_device_between_log_points(tmp_path, monkeypatch):
    """Host reads of tensor values (.item(), .tolist(), bool()) wait for the device; the loop makes
    them only at log points, at the end of an epoch and at checkpoints, never per step: an epoch
    of twice the steps makes exactly as many."""
    reads = {"count": 0}
    for name in ("item", "tolist", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads["count"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    counts = []
    for limit in (64, 128):  # 8 and 16 steps of 8, one log point at most (log_every 1000)
        reads["count"] = 0
        assert loop.train(tiny_config(tmp_path / str(limit), limit=limit, log_every=1000,
                                      checkpoint_minutes=1000)) == 0
        counts.append(reads["count"])
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("loader_s, step_s", [(0.04, 0.0), (0.0, 0.04), (0.03, 0.01)])
def test_data_wait_counts_the_time_spent_waiting_for_batches(monkeypatch, loader_s, step_s):
    """On a stand-in clock that only the loader and the step advance (no sleeping, no wall clock)."""
    from types import SimpleNamespace

    now = [0.0]
    monkeypatch.setattr(loop, "time", SimpleNamespace(monotonic=lambda: now[0]))

    def batches():
        for i in range(5):
            now[0] += loader_s
            yield i

    def step(batch):
        now[0] += step_s
        return batch

    waiting = loop.DataWait(batches())
    assert list(map(step, waiting)) == list(range(5))
    assert waiting.seconds == pytest.approx(5 * loader_s)
    assert waiting.seconds / (now[0] - waiting.started) == pytest.approx(loader_s / (loader_s + step_s))


def test_the_fast_preset_is_the_papers_recipe_with_the_gpu_speed_options():
    c = config_from_args(parse(["--preset", "fast", "--device", "cpu"]))
    paper = TrainConfig()
    assert (c.amp, c.channels_last, c.compile) == ("bf16", True, True)
    for name in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "pca_std", "limit",
                 "fc8_lr_mult", "optimizer"):
        assert getattr(c, name) == getattr(paper, name), name
    assert config_from_args(parse(["--preset", "fast", "--no-flip", "--amp", "fp16"])).amp == "fp16"


def test_default_workers_share_the_cores_and_leave_one_to_each_gpu_process(monkeypatch):
    from alexnet.train import data

    monkeypatch.setattr(data, "default_workers", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert data.default_workers_per_process(torch.device("cpu")) == 16
    assert data.default_workers_per_process(torch.device("cuda", 0)) == 15
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert data.default_workers_per_process(torch.device("cuda", 3)) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert data.default_workers_per_process(torch.device("cuda", 3)) == 1


def test_channels_last_is_on_where_it_pays_unless_asked_otherwise():
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")
    assert loop.channels_last(TrainConfig(), cpu) and loop.channels_last(TrainConfig(), cuda)
    assert not loop.channels_last(TrainConfig(), mps)
    assert not loop.channels_last(config_from_args(parse(["--no-channels-last", "--device", "cpu"])), cpu)
    assert loop.channels_last(config_from_args(parse(["--channels-last", "--device", "cpu"])), mps)


def test_a_damaged_shard_ends_the_run_at_once_with_one_line_naming_the_shard_and_sample(tmp_path, prepared):
    """A loader worker's error ends the run (it used to hang at exit, waiting for workers that
    ignore SIGTERM); the subprocess timeout is the hang detector, not a measurement."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    damaged = shutil.copytree(prepared, tmp_path / "damaged")
    shard = next((damaged / "train").glob("*.tar"))
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    argv = ["train", "--data", str(damaged), "--arch", "tiny-test", "--preset", "full", "--epochs", "1",
            "--batch-size", "4", "--workers", "1", "--device", "cpu", "--out", str(tmp_path / "run")]
    done = subprocess.run([sys.executable, "-m", "tests.kit", *argv], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=kit.HANG_GUARD_S)
    assert done.returncode == 2, done.stderr[-2000:]
    error = [line for line in done.stderr.splitlines() if "alexnet train: error:" in line]
    assert len(error) == 1 and str(shard) in error[0] and "sample" in error[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def _echo_after_ignoring_stop_signals(conn, trainer) -> None:
    from alexnet.train.data import ignore_stop_signals

    ignore_stop_signals(0, trainer)
    conn.send("ready")
    while True:
        conn.send(conn.recv())


@pytest.mark.parametrize("start", ["fork", "forkserver"])  # Linux's DataLoader default up to and from Python 3.14
def test_a_loader_worker_outlives_sigterm_from_others_but_ends_on_its_trainers(start):
    """Schedulers signal every process of a job, and a worker dying of it would fail the step; the
    trainer's own SIGTERM (multiprocessing's way to stop workers at exit) must still end it, also
    where the worker's parent is a forkserver rather than the trainer."""
    import multiprocessing
    import os
    import subprocess
    import sys

    context = multiprocessing.get_context(start)
    here, there = context.Pipe()
    worker = context.Process(target=_echo_after_ignoring_stop_signals, args=(there, os.getpid()), daemon=True)
    worker.start()
    try:
        assert here.recv() == "ready"
        for name in ("SIGTERM", "SIGINT"):
            subprocess.run([sys.executable, "-c", f"import os, signal; os.kill({worker.pid}, signal.{name})"],
                           check=True)
        here.send("still there?")
        assert here.recv() == "still there?"
        worker.terminate()
        worker.join(timeout=kit.HANG_GUARD_S)
        assert worker.exitcode is not None, "the worker ignored its trainer's SIGTERM"
    finally:
        if worker.is_alive():
            worker.kill()


def test_best_pt_survives_a_failure_while_it_is_written(tmp_path, monkeypatch):
    """best.pt is written before last.pt records the epoch as done: a failure (a kill, a full disk)
    while writing best.pt leaves last.pt before that epoch's end, and the resumed run writes it."""
    import errno

    real_save, failures = checkpoint.atomic_torch_save, []

    def save_failing_once(checkpoint, path):
        if path.name == "best.pt" and not failures:
            failures.append(path)
            raise OSError(errno.EIO, "Input/output error")
        real_save(checkpoint, path)

    monkeypatch.setattr(checkpoint, "atomic_torch_save", save_failing_once)
    config = tiny_config(tmp_path, epochs=2, checkpoint_minutes=0)
    with pytest.raises(OSError):
        loop.train(config)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert not (checkpoints / "best.pt").exists()
    assert torch.load(checkpoints / "last.pt", weights_only=True)["epoch"] == 0
    assert loop.train(config, resume=checkpoints / "last.pt") == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    best = min(records, key=lambda r: r["val_top1_error"])
    assert torch.load(checkpoints / "best.pt", weights_only=True)["epoch"] == best["epoch"]


def test_the_next_run_removes_the_temporaries_that_killed_writes_left(tmp_path):
    config = tiny_config(tmp_path, epochs=2)
    assert loop.train(tiny_config(tmp_path, epochs=1)) == 0
    checkpoints = tmp_path / "run" / "checkpoints"
    orphans = [checkpoints / ".best.pt.k1ll3d.tmp", checkpoints / ".last.pt.abc123.tmp",
               tmp_path / "run" / ".metrics.jsonl.x.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    assert loop.train(config, resume=checkpoints / "last.pt") == 0
    assert not any(orphan.exists() for orphan in orphans)
    assert {p.name for p in checkpoints.iterdir()} == {"best.pt", "last.pt"}


def test_a_resumed_run_that_finds_no_best_pt_writes_one(tmp_path):
    assert loop.train(tiny_config(tmp_path)) == 0
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    best.unlink()
    assert loop.train(tiny_config(tmp_path, epochs=2), resume=best.with_name("last.pt")) == 0
    assert torch.load(best, weights_only=True)["epoch"] == 2


def test_best_pt_holds_no_optimizer_state_and_is_about_half_of_last_pt(tmp_path):
    assert loop.train(tiny_config(tmp_path, arch="alexnet", model_options=SMALL_ALEXNET)) == 0
    checkpoints = tmp_path / "run" / "checkpoints"
    best, last = ((checkpoints / name).stat().st_size for name in ("best.pt", "last.pt"))
    weights = sum(p.numel() * 4 for p in load_model(checkpoints / "best.pt").parameters())
    assert last - best >= weights  # the momentum, as large as the weights, is in last.pt only
    assert "optimizer" not in torch.load(checkpoints / "best.pt", weights_only=True)


def test_a_full_disk_names_the_file_and_the_space_it_needs_and_keeps_the_previous_checkpoint(
        tmp_path, monkeypatch, capsys):
    import errno

    argv = ["train", "--data", "synthetic", "--arch", "tiny-test", "--epochs", "1", "--limit", "16",
            "--val-limit", "8", "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / "run"),
            "--model-option", "num_classes=3"]
    assert kit.alexnet_command(capsys, *argv).returncode == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    real_save = torch.save

    def fill_the_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # a partial file is left in the temporary
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fill_the_disk)
    status, _, err = kit.alexnet_command(capsys, "train", "--resume", tmp_path / "run", "--epochs", "2")
    assert status == 2 and "Traceback" not in err
    assert f"{tmp_path / 'run' / 'checkpoints'}" in err and "no space left on the device" in err and "needs about" in err
    assert last.read_bytes() == before
    assert not list(last.parent.glob(".*.tmp"))


def test_a_synthetic_run_suggests_no_command_that_cannot_work_on_it(tmp_path, capsys):
    argv = ["train", "--data", "synthetic", "--arch", "tiny-test", "--epochs", "1", "--limit", "8",
            "--val-limit", "8", "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / "run")]
    status, _, err = kit.alexnet_command(capsys, *argv)
    assert status == 0 and "done. Validation top-1 error" in err
    assert "alexnet predict" not in err and "alexnet evaluate" not in err  # no mean image, no real data
    assert "train with --data PATH or a dataset name for those" in err


@pytest.mark.parametrize("where", ["a file", "under a file", "read-only"])
def test_an_out_folder_that_cannot_be_made_is_a_one_line_error(tmp_path, capsys, monkeypatch, where):
    import errno
    from pathlib import Path

    (tmp_path / "file").write_text("not a folder")
    out = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "run"}.get(where, tmp_path / "ro")
    if where == "read-only":  # as root, permissions cannot make one
        def read_only(self, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(self))

        monkeypatch.setattr(Path, "mkdir", read_only)
    status, _, err = kit.alexnet_command(capsys, "train", "--data", "synthetic", "--arch", "tiny-test", "--epochs", "1",
                                         "--device", "cpu", "--out", out)
    assert status == 2 and f"--out {out}: cannot make the folder" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["empty", "truncated", "pickled code", "a model file"])
def test_resuming_from_a_damaged_last_pt_is_a_one_line_error_naming_it(tmp_path, capsys, damage):
    import pickle

    assert loop.train(tiny_config(tmp_path)) == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    witness = tmp_path / "code-ran"
    if damage == "empty":
        last.write_bytes(b"")
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    elif damage == "pickled code":
        class Payload:
            def __reduce__(self):
                return (open, (str(witness), "w"))

        last.write_bytes(pickle.dumps({"model": Payload()}))
    else:
        ck = torch.load(last, weights_only=True)
        torch.save({k: ck[k] for k in ("model", "arch", "options", "class_names")}, last)
    status, _, err = kit.alexnet_command(capsys, "train", "--resume", tmp_path / "run", "--epochs", "2")
    assert status == 2 and f"{last}: " in err and "Traceback" not in err, err
    assert ("not a training checkpoint" if damage == "a model file" else "not a readable model file") in err
    assert not witness.exists()
