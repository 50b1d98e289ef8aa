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
from alexnet.train import inputs
from alexnet.train.cli import config_from_args
from alexnet.train.config import PRESETS, TrainConfig, check
from tests import tinynet

METRIC_KEYS = {"epoch", "train_loss", "train_top1_error", "train_top5_error", "val_loss", "val_top1_error",
               "val_top5_error", "lr", "images_per_s", "data_wait_share", "seconds"}
CHECKPOINT_KEYS = {"model", "arch", "options", "class_names", "optimizer", "scheduler", "scaler", "epoch",
                   "position", "rng", "config"}


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
    for name in ("last.pt", "best.pt"):
        ck = torch.load(run / "checkpoints" / name, weights_only=True)
        assert CHECKPOINT_KEYS <= set(ck)
        assert ck["arch"] == "tiny-test" and ck["options"]["num_classes"] == 7
        assert ck["class_names"] == [f"class{i}" for i in range(7)]
        assert (ck["epoch"], ck["position"]) == (1, 0)
        assert ck["config"] == config.to_dict()
        assert set(ck["rng"]) == {"torch", "cuda", "numpy", "python"}


def test_validation_metrics_are_the_trained_weights_errors_on_every_validation_image(tmp_path):
    config = tiny_config(tmp_path)
    loop.train(config)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    net = tinynet.TinyNet(7)
    net.load_state_dict(torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"])
    net.eval()
    val = inputs.SyntheticImages(37, 7, 16, config.seed, "val", torch.device("cpu"))
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
    (["--lr", "0"], "--lr must be positive"),
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
    return tinynet.make_prepared(tmp_path_factory.mktemp("data"))


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
    from alexnet.train.distributed import Context
    from alexnet.train.prepared import prepared_data

    config = tiny_config(tmp_path, data=str(prepared), workers=0, batch_size=16, **switches)
    data = prepared_data(config, Context(), 64, "mean_image")
    _, _, windows = next(iter(data.train_batches(0, 0)))
    centre = (80 - 64) // 2
    assert bool((windows[:, :2] == centre).all()) == centred
    assert bool(windows[:, 2].any()) == mirrored
    assert (data.transform.pca_std > 0) == noisy


def test_decoding_on_the_device_trains_the_same_network_as_decoding_in_workers(tmp_path, prepared, monkeypatch):
    """With a decoder that matches the workers' (libjpeg), --decode device gives the same crops in
    the same order, so the same weights; torchvision's nvJPEG runs on the GPU only (gpu.sh)."""
    import fake_torchvision

    calls = fake_torchvision.install(monkeypatch)
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


@pytest.mark.parametrize("loader_sleep, step_sleep, low, high", [(0.04, 0.0, 0.8, 1.0), (0.0, 0.04, 0.0, 0.2)])
def test_data_wait_counts_the_time_spent_waiting_for_batches(loader_sleep, step_sleep, low, high):
    import time

    def batches():
        for i in range(5):
            time.sleep(loader_sleep)
            yield i

    waiting = loop.DataWait(batches())
    assert list(map(lambda b: time.sleep(step_sleep) or b, waiting)) == list(range(5))
    share = waiting.seconds / (time.monotonic() - waiting.started)
    assert low <= share <= high


def test_the_fast_preset_is_the_papers_recipe_with_the_gpu_speed_options():
    c = config_from_args(parse(["--preset", "fast", "--device", "cpu"]))
    paper = TrainConfig()
    assert (c.amp, c.channels_last, c.compile) == ("bf16", True, True)
    for name in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "pca_std", "limit",
                 "fc8_lr_mult", "optimizer"):
        assert getattr(c, name) == getattr(paper, name), name
    assert config_from_args(parse(["--preset", "fast", "--no-flip", "--amp", "fp16"])).amp == "fp16"


def test_default_workers_share_the_cores_and_leave_one_to_each_gpu_process(monkeypatch):
    from alexnet.train import prepared

    monkeypatch.setattr(prepared, "default_workers", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert prepared.default_workers_per_process(torch.device("cpu")) == 16
    assert prepared.default_workers_per_process(torch.device("cuda", 0)) == 15
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert prepared.default_workers_per_process(torch.device("cuda", 3)) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert prepared.default_workers_per_process(torch.device("cuda", 3)) == 1


def test_channels_last_is_on_where_it_pays_unless_asked_otherwise():
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")
    assert loop.channels_last(TrainConfig(), cpu) and loop.channels_last(TrainConfig(), cuda)
    assert not loop.channels_last(TrainConfig(), mps)
    assert not loop.channels_last(config_from_args(parse(["--no-channels-last", "--device", "cpu"])), cpu)
    assert loop.channels_last(config_from_args(parse(["--channels-last", "--device", "cpu"])), mps)
