"""`alexnet bench model` and `alexnet bench train` on tiny settings: they run in seconds and give
well-formed records whose numbers hang together."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.bench import model as bench_model
from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.bench import train as bench_train
from tests.kit import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
TINY_OPTIONS = ["--model-option", "input_size=67", "--model-option", "fc_width=16",
                "--model-option", "channels=[8,16,16,16,16]"]
TINY = dict(input_size=67, fc_width=16, channels=[8, 16, 16, 16, 16])
SETTING_KEYS = {"name", "about", "lrn", "channels_last", "amp", "compile", "fused", "skipped",
                "images_per_s", "step_ms", "cpu_ms", "ratio", "cpu_ratio", "peak_memory"}


def quiet(message):
    pass


def test_bench_model_prints_json_with_every_setting_and_plain_as_the_baseline():
    command = [sys.executable, "-m", "alexnet", "bench", "model", "--device", "cpu", "--batch-size", "2",
               "--steps", "1", "--warmup", "0", "--optimizer-step", "--json",
               "--model-option", "num_classes=5", *TINY_OPTIONS, "--settings", "fast-fp32", "fp16"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["kind"] == "model" and record["baseline"] == "plain"
    assert record["batch_size"] == 2 and record["input_size"] == 67 and record["optimizer_step"]
    assert {"device", "device_name", "threads", "torch", "date", "load_average"} <= record.keys()
    assert record["keep_freed_memory"] is False and record["flush_denormal"] is False  # not asked for
    names = [s["name"] for s in record["settings"]]
    assert names == ["plain", "fast-fp32", "fp16"]  # plain is measured even when not asked for
    by_name = {s["name"]: s for s in record["settings"]}
    assert all(s.keys() == SETTING_KEYS for s in record["settings"])
    assert by_name["plain"]["ratio"] == 1.0 and by_name["plain"]["lrn"] == "torch"
    fast = by_name["fast-fp32"]
    assert fast["ratio"] == pytest.approx(fast["images_per_s"] / by_name["plain"]["images_per_s"])
    assert fast["images_per_s"] == pytest.approx(2 / (fast["step_ms"] / 1000))
    assert fast["cpu_ratio"] == pytest.approx(by_name["plain"]["cpu_ms"] / fast["cpu_ms"])
    assert "float16" in by_name["fp16"]["skipped"] and by_name["fp16"]["images_per_s"] is None


def test_bench_model_profiles_a_setting_and_refuses_one_it_does_not_measure():
    record = bench_model.benchmark(batch_size=2, device="cpu", settings=["fast-fp32"], steps=1, warmup=0,
                                   model_options=dict(TINY), profile=["fast-fp32"], report=quiet)
    (profiled,) = record["profiles"]
    top = profiled["top"]
    assert profiled["setting"] == "fast-fp32" and 0 < len(top) <= 12
    assert all(e["ms_per_step"] > 0 and e["calls_per_step"] > 0 for e in top)
    assert [e["share"] for e in top] == sorted((e["share"] for e in top), reverse=True)
    assert 0 < sum(e["share"] for e in top) <= 1 + 1e-9
    assert any("convolution" in e["name"] for e in top)  # the convolutions are a large part of the step
    json.dumps(record)
    with pytest.raises(UserError, match="--profile bf16: not among the settings measured"):
        bench_model.benchmark(batch_size=2, device="cpu", settings=["fast-fp32"], steps=1,
                              model_options=dict(TINY), profile=["bf16"], report=quiet)


def test_bench_model_keeps_the_best_of_its_rounds_alternating_their_order_and_writes_each_row(tmp_path):
    seen = []
    record = bench_model.benchmark(batch_size=2, device="cpu", settings=["ours-lrn"], steps=1, warmup=0,
                                   rounds=3, model_options={"num_classes": 3, **TINY}, report=seen.append,
                                   rows=str(tmp_path / "rows.jsonl"))
    assert [line.split(": ")[0].split(" ", 2)[2] for line in seen] == [
        "plain", "ours-lrn", "ours-lrn", "plain", "plain", "ours-lrn"]  # forwards, backwards, forwards
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [(r["setting"], r["round"]) for r in rows] == [
        ("plain", 1), ("ours-lrn", 1), ("ours-lrn", 2), ("plain", 2), ("plain", 3), ("ours-lrn", 3)]
    assert all(r["kind"] == "model" and r["batch_size"] == 2 and r["steps"] == 1 for r in rows)
    rates = {}
    for line in seen:
        name, rate = line.split(" ", 2)[2].rstrip(" images/s").split(": ")
        rates.setdefault(name, []).append(float(rate))
    for s in record["settings"]:
        assert s["images_per_s"] == pytest.approx(max(rates[s["name"]]), abs=0.05 + 1e-9)  # printed to 0.1


def test_bench_model_rejects_an_unknown_setting_naming_the_known_ones(capsys):
    assert main(["bench", "model", "--settings", "turbo"]) == 2
    err = capsys.readouterr().err
    assert "--settings: unknown turbo" in err and "fast-fp32" in err


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny image folder (3 classes, 4 JPEGs each) prepared at 80x80."""
    from alexnet.data.prepare import prepare

    root = tmp_path_factory.mktemp("bench-data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 1)):
        for c in range(3):
            folder = root / "source" / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (90 + 7 * i, 100, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.JPEG", quality=90)
    return prepare(root / "source", root / "prepared", size=80, workers=1, progress=False)


def test_examples_baseline_reads_the_source_jpegs_with_the_prepared_class_indices(prepared):
    from alexnet.data.dataset import PreparedDataset

    files = bench_train.source_images(PreparedDataset(prepared, "train"))
    assert len(files) == 12
    for path, label in files:
        assert Path(path).parent.name == f"n0000000{label}"


def test_examples_baseline_reads_a_plain_class_folder_source(tmp_path):
    from alexnet.data.dataset import PreparedDataset
    from tests.kit import image_folder, run_prepare

    source = image_folder(tmp_path / "src", per_class=4, val_per_class=0)
    shutil.rmtree(source / "val", ignore_errors=True)
    for d in (source / "train").iterdir():  # ROOT/<class>/<image>, no train/ (prepare holds out a share)
        d.rename(source / d.name)
    (source / "train").rmdir()
    files = bench_train.source_images(PreparedDataset(run_prepare(source, tmp_path / "out"), "train"))
    assert len(files) == len(list(source.rglob("*.JPEG"))) > 0 and {Path(f).parent.parent for f, _ in files} == {source}


def crop_boxes(monkeypatch) -> list:
    """Records the box of every ``Image.resize`` (the region a crop takes) and its output size."""
    boxes, resize = [], Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, resample=None, box=None, **kw: (
        boxes.append((box, size)) or resize(self, size, resample, box, **kw)))
    return boxes


def test_random_resized_crop_takes_8_to_100_percent_at_aspect_3_4_to_4_3_as_torchvision(monkeypatch):
    boxes = crop_boxes(monkeypatch)
    image = Image.fromarray(np.zeros((50, 90, 3), np.uint8))
    rng = np.random.default_rng(0)
    assert {bench_train.random_resized_crop(image, 31, rng).size for _ in range(200)} == {(31, 31)}
    assert len(boxes) == 200 and {size for _, size in boxes} == {(31, 31)}
    regions = {box for box, _ in boxes}
    assert len(regions) > 150  # random places and sizes, not one fixed crop
    for left, top, right, bottom in regions:
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 90 and 0 <= top < bottom <= 50
        # the drawn width and height are w and h before rounding to whole pixels
        assert (w + 0.5) * (h + 0.5) >= 0.08 * 90 * 50
        assert (w - 0.5) / (h + 0.5) <= 4 / 3 and (w + 0.5) / (h - 0.5) >= 3 / 4


def test_random_resized_crop_falls_back_to_the_central_square_when_no_draw_fits(monkeypatch):
    boxes = crop_boxes(monkeypatch)
    strip = Image.fromarray(np.zeros((2, 100, 3), np.uint8))  # 8% of it is no 3:4..4:3 box 2 high
    assert bench_train.random_resized_crop(strip, 31, np.random.default_rng(0)).size == (31, 31)
    assert boxes == [((49, 0, 51, 2), (31, 31))]


def test_bench_train_measures_ours_and_the_examples_way_with_the_ratio(prepared):
    record = bench_train.benchmark(str(prepared), batch_size=4, device="cpu", steps=2, warmup=1, workers=0,
                                   model_options=dict(TINY), report=quiet)
    json.dumps(record)  # well-formed
    assert record["kind"] == "train" and record["train_images"] == 12 and record["source_images"] == 12
    for way in ("ours", "examples"):
        r = record[way]
        assert r["steps"] == 2
        assert r["images_per_s"] == pytest.approx(8 / r["seconds"])
        assert 0.0 <= r["data_wait_share"] <= 1.0
        assert 0 < r["host_cpu_use"] <= 1 and r["images_per_host_cpu_s"] > 0  # /proc/stat, Linux
        assert r["peak_memory"] is None  # CUDA only
    assert record["ours"]["setting"] == "fast-fp32"
    ours, examples = record["ours"]["images_per_s"], record["examples"]["images_per_s"]
    assert record["ratio"] == pytest.approx(ours / examples)
    assert [d["decode"] for d in record["runs"]] == ["workers"] and record["ours"]["decode"] == "workers"


def test_bench_train_measures_each_decoder_and_skips_one_that_cannot_run(prepared, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # no torchvision: decoding on the device fails
    record = bench_train.benchmark(str(prepared), batch_size=4, device="cpu", steps=1, warmup=0, workers=0,
                                   model_options=dict(TINY), decode=["workers", "device"], report=quiet)
    workers, device = record["runs"]
    assert workers["ratio"] == pytest.approx(record["ratio"]) and workers["steps"] == 1
    assert device["decode"] == "device" and "needs torchvision" in device["skipped"]
    json.dumps(record)


def test_bench_train_with_decoding_on_the_device(prepared, fake_torchvision):
    calls = fake_torchvision
    record = bench_train.benchmark(str(prepared), batch_size=4, device="cpu", steps=2, warmup=1, workers=0,
                                   model_options=dict(TINY), decode=["device"], report=quiet)
    assert record["ours"]["decode"] == "device" and record["ours"]["steps"] == 2 and calls
    assert record["ratio"] == pytest.approx(record["ours"]["images_per_s"] / record["examples"]["images_per_s"])


def test_bench_train_measures_the_baseline_between_its_first_two_runs():
    assert bench_train.plan(["workers", "device"], [15, 8]) == [
        ("workers", 15), ("examples", 15), ("device", 15), ("workers", 8), ("device", 8)]
    assert bench_train.plan(["workers"], [4]) == [("workers", 4), ("examples", 4)]


def test_bench_train_refuses_a_folder_that_is_not_prepared(tmp_path, capsys):
    assert main(["bench", "train", "--data", str(tmp_path)]) == 2
    assert "not a prepared dataset" in capsys.readouterr().err


def test_the_cuda_clock_counts_the_device_idle_between_steps(monkeypatch):
    """bench train's CUDA clock, with stand-in events on a stand-in device clock that the test
    advances (no sleeping, no wall clock): idle time between steps over the span of all steps."""
    import torch

    device_ms = [0.0]  # the stand-in device's clock

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.at = None

        def record(self):
            self.at = device_ms[0]

        def elapsed_time(self, later):  # milliseconds, as CUDA events
            return later.at - self.at

    def step():  # the device runs a step for 10 ms
        device_ms[0] += 10

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 12345)
    clock = bench_train.Clock(torch.device("cuda", 0))
    clock.begin()
    for _ in range(4):
        device_ms[0] += 30  # waiting for data: the device idles 30 ms
        clock.step(0.03, step)
    record = clock.result(images=4 * 8)
    assert record["steps"] == 4 and record["host_wait_s"] == pytest.approx(0.12)
    # three gaps of 30 ms over a span of 4 x 10 + 3 x 30 = 130 ms
    assert record["data_wait_share"] == pytest.approx(90 / 130)
    assert record["images_per_s"] == pytest.approx(32 / record["seconds"])
    assert record["peak_memory"] == 12345


def test_a_timing_in_seconds_doubles_its_runs_then_sizes_the_last_to_end_near_the_mark(monkeypatch):
    """On a stand-in clock that each call advances by one second: runs of 1, 2, 4, then the 3 calls
    that reach 10 s, not 8 (no sleeping, no wall clock)."""
    import torch

    from alexnet.bench import common

    clock = [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])
    calls = []
    per_call, _, count = common.timed_for(torch.device("cpu"), lambda: calls.append(clock.__setitem__(
        0, clock[0] + 1)), seconds=10)
    assert count == len(calls) == 10 and per_call == 1.0
    assert common.timed_for(torch.device("cpu"), lambda: None, seconds=0)[2] == 1  # at least one call
