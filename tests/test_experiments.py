"""`alexnet experiment relu-vs-tanh`: Figure 1's 25% crossing and section 3.3's LRN comparison."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.analysis.figure1 import SmallRun, Standardise, crossing
from alexnet.analysis.imageset import load_images
from alexnet.analysis.smallcnn import FourLayerCNN

ROOT = Path(__file__).resolve().parents[1]


def curve(errors, seconds_per_point=2.0):
    return [{"epoch": i + 1, "train_error": e, "seconds": seconds_per_point * (i + 1)} for i, e in enumerate(errors)]


def test_crossing_interpolates_between_the_points_around_25_percent():
    # 40% at epoch 2, 20% at epoch 3: 25% is three quarters of the way, epoch 2.75, 5.5 s
    assert crossing(curve([60, 40, 20, 10])) == pytest.approx({"epoch": 2.75, "seconds": 5.5})


def test_crossing_is_the_first_point_when_it_starts_below_and_none_when_never_reached():
    assert crossing(curve([20, 10])) == {"epoch": 1, "seconds": 2.0}
    assert crossing(curve([60, 40, 26])) is None
    assert crossing(curve([60, 25])) == pytest.approx({"epoch": 2, "seconds": 4.0})  # "reaches" includes equal


def test_the_four_layer_net_has_three_convolutions_and_one_fully_connected_layer():
    net = FourLayerCNN("tanh", lrn=True)
    weighted = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [type(m).__name__ for m in weighted] == ["Conv2d", "Conv2d", "Conv2d", "Linear"]
    assert sum(isinstance(m, torch.nn.Tanh) for m in net.modules()) == 3
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_standardise_subtracts_the_mean_image_and_divides_by_one_std():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    s = Standardise(images, chunk=3)
    x = images.double()
    assert torch.allclose(s.mean.double(), x.mean(0), atol=1e-4)
    expected = ((x - x.mean(0)) / (x - x.mean(0)).pow(2).mean().sqrt()).float()
    assert torch.allclose(s(images), expected, atol=1e-4)


def make_image_folder(root: Path, per_class=24, classes=("bright", "dark")):
    """Two easily told apart classes: bright and dark 32x32 images with noise."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            base = 200 if c == 0 else 50
            pixels = np.clip(base + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "train" / name / f"{i:04d}.png")
    return root


def test_image_folder_loads_as_uint8_with_sorted_class_indices(tmp_path):
    data = load_images(str(make_image_folder(tmp_path, per_class=3)))
    assert data.images.shape == (6, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.classes == ["bright", "dark"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_training_error_points_are_recorded_per_segment_with_growing_seconds(tmp_path):
    data = load_images(str(make_image_folder(tmp_path)))
    run = SmallRun(data, "relu", lr=0.01, batch_size=8, segments=3)
    points = run.train(2)
    assert [p["epoch"] for p in points] == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    assert all(a["seconds"] < b["seconds"] for a, b in zip(points, points[1:]))
    assert 0 <= run.test_error(data) <= 100


def test_relu_vs_tanh_command_writes_figure_json_and_lrn_result(tmp_path):
    data = make_image_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "alexnet", "experiment", "relu-vs-tanh", "--data", str(data), "--epochs", "2",
         "--lrs", "0.01", "0.05", "--batch-size", "8", "--lrn", "--holdout", "0.25", "--out", str(out),
         "--json", str(tmp_path / "numbers.json"), "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "numbers.json").read_text())
    assert json.loads((out / "relu-vs-tanh.json").read_text()) == result
    assert (out / "figure1.png").stat().st_size > 0
    assert result["images"] == 36  # 48 images, a quarter held out
    assert {r["lr"] for r in result["search"]["relu"]} == {0.01, 0.05}
    for activation in ("relu", "tanh"):
        run = result["runs"][activation]
        assert run["epochs"] == 2 and run["lr"] in (0.01, 0.05)
        assert run["crossing_25"] == crossing(run["points"])
    assert result["lrn"]["heldout_images"] == 12
    assert "held-out test error" in proc.stdout


def test_relu_vs_tanh_rejects_a_folder_without_images(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alexnet", "experiment", "relu-vs-tanh", "--data", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr and "image folder" in proc.stderr
