"""`alexnet experiment relu-vs-tanh`: Figure 1's 25% crossing and section 3.3's LRN comparison."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from alexnet.analysis.ablations import table, variant_changes
from alexnet.analysis.figure1 import SmallRun, Standardise, crossing
from alexnet.analysis.imageset import load_images
from alexnet.analysis.smallcnn import FourLayerCNN
from tests.kit import alexnet_command, colour, image_folder, make_prepared



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


def make_image_folder(root: Path, per_class=24):
    """Two classes, ``bright`` and ``dark``, of noisy 32x32 colour images (no validation split)."""
    return image_folder(root, per_class, 0, classes=("bright", "dark"), size=(32, 32), noise=30, suffix=".png")


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


def test_relu_vs_tanh_command_writes_figure_json_and_lrn_result(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    proc = alexnet_command(
        capsys, "experiment", "relu-vs-tanh", "--data", data, "--epochs", 2, "--lrs", 0.01, 0.05, "--batch-size", 8,
        "--lrn", "--holdout", 0.25, "--out", out, "--json", tmp_path / "numbers.json", "--device", "cpu")
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


def test_relu_vs_tanh_rejects_a_folder_without_images(tmp_path, capsys):
    proc = alexnet_command(capsys, "experiment", "relu-vs-tanh", "--data", tmp_path)
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr and "image folder" in proc.stderr


# --- ablations: the paper's network against its variants, through the trainer ------------------------

SMALL = ["--model-option", "num_classes=5", "--model-option", "input_size=67", "--model-option",
         "channels=[8,16,16,16,16]", "--model-option", "fc_width=32"]


def test_each_variant_changes_one_thing_of_the_paper_network():
    assert variant_changes("no-lrn", {}) == {"model_options": {"lrn": False}}
    assert variant_changes("non-overlapping-pooling", {})["model_options"] == {"pooling": "non-overlapping"}
    assert variant_changes("no-dropout", {"fc_width": 32})["model_options"] == {"fc_width": 32, "dropout": 0.0}
    assert variant_changes("no-pca", {})["pca_std"] == 0.0
    assert variant_changes("no-middle-conv", {}, "conv3")["model_options"] == {"drop_layer": "conv3"}
    # section 3.2 with footnote 3: half the kernels of conv1..conv4, conv5 as it is (registry's alexnet-onetower)
    assert variant_changes("one-tower", {})["model_options"] == {"towers": 1, "channels": [48, 128, 192, 192, 256]}
    assert variant_changes("one-tower", {"channels": [8, 16, 16, 16, 16]})["model_options"]["channels"] == [4, 8, 8, 8, 16]


def test_ablation_differences_are_variant_minus_paper_from_the_last_epoch(tmp_path):
    for name, errors in (("paper", [(50.0, 20.0), (40.0, 15.0)]), ("no-lrn", [(55.0, 22.0), (43.0, 16.5)])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e, "val_top1_error": t1, "val_top5_error": t5}) + "\n"
            for e, (t1, t5) in enumerate(errors, start=1)))
    rows = {r["variant"]: r for r in table(["paper", "no-lrn"], tmp_path)["rows"]}
    assert rows["no-lrn"]["top1_difference"] == pytest.approx(3.0)
    assert rows["no-lrn"]["top5_difference"] == pytest.approx(1.5)
    assert rows["no-lrn"]["paper"] == "+1.4 / +1.2" and rows["paper"]["top1_difference"] == 0


def ablations(capsys, out, *extra):
    return alexnet_command(capsys, "experiment", "ablations", "--data", "synthetic", "--out", out, "--batch-size", 8,
                           "--limit", 16, "--val-limit", 8, "--device", "cpu", "--workers", 0, "--variants", "no-lrn",
                           *SMALL, *extra)


def test_ablations_train_each_variant_in_its_folder_and_resume_when_run_again(tmp_path, capsys):
    proc = ablations(capsys, tmp_path, "--epochs", 1)
    assert proc.returncode == 0, proc.stderr
    options = {name: yaml.safe_load((tmp_path / name / "config.yaml").read_text())["model_options"]
               for name in ("paper", "no-lrn")}
    assert options["no-lrn"] == options["paper"] | {"lrn": False}
    result = json.loads((tmp_path / "ablations.json").read_text())
    assert [r["variant"] for r in result["rows"]] == ["paper", "no-lrn"]
    assert "| no-lrn |" in (tmp_path / "ablations.md").read_text()
    proc = ablations(capsys, tmp_path, "--epochs", 2)  # a longer budget continues both runs from their checkpoints
    assert proc.returncode == 0, proc.stderr
    assert "paper: resuming" in proc.stdout
    for name in ("paper", "no-lrn"):
        assert [json.loads(line)["epoch"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    proc = ablations(capsys, tmp_path, "--epochs", 2)
    assert "finished earlier (2 epochs), kept" in proc.stdout


def test_a_prepared_dataset_loads_its_train_split_scaled_to_32x32(tmp_path):
    data = load_images(str(make_prepared(tmp_path, per_class=(6, 2), size=72)))
    assert data.images.shape == (18, 3, 32, 32)
    assert data.classes == ["c0", "c1", "c2"] and data.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    third = data.images[data.labels == 2].float().mean(dim=(0, 2, 3))
    assert (third - torch.tensor(colour(2))).abs().max() < 10  # the class keeps its colour after scaling
