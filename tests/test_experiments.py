"""`alexnet experiment relu-vs-tanh` (Figure 1 in the authors' setup) and `alexnet experiment ablations`."""

import fcntl
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from alexnet.analysis.ablations import table, variant_changes
from alexnet.analysis import figure1
from alexnet.analysis.figure1 import SmallRun, crossing, search_lr, speedup, stop_after
from alexnet.analysis.figure1_sweep import SETTINGS
from alexnet.analysis.imageset import load_images
from alexnet.analysis.figure1 import FourLayerCNN
from alexnet.analysis.smalltrain import Inputs, RunStore
from alexnet.errors import UserError
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
    net = FourLayerCNN("tanh")
    weighted = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [type(m).__name__ for m in weighted] == ["Conv2d", "Conv2d", "Conv2d", "Linear"]
    assert sum(isinstance(m, torch.nn.Tanh) for m in net.modules()) == 3
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_authors_init_draws_each_layer_from_its_own_gaussian_and_zeroes_the_biases():
    torch.manual_seed(0)
    net = FourLayerCNN("relu", init="authors")
    weighted = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    # layers-18pct's initW: conv1 0.0001, conv2 0.01, conv3 0.01, fc10 0.01
    for layer, std in zip(weighted, (1e-4, 1e-2, 1e-2, 1e-2)):
        assert layer.weight.std().item() == pytest.approx(std, rel=0.1)
        assert abs(layer.weight.mean().item()) < std / 5
        assert torch.count_nonzero(layer.bias) == 0
    default = FourLayerCNN("relu", init="pytorch")  # Kaiming-uniform: conv1 std about 0.07, not 0.0001
    assert default.features[0].weight.std().item() > 100 * 1e-4


def test_pooling_windows_start_at_the_first_pixel_and_the_last_is_cut_at_the_border():
    # cuda-convnet pools from pixel 0 with the output size rounded up: 32 -> 16 -> 8 -> 4
    net = FourLayerCNN("relu")
    x = torch.randn(1, 32, 32, 32)
    pooled = net.features[2](x)
    assert pooled.shape == (1, 32, 16, 16)
    assert torch.equal(pooled[0, :, 0, 0], x[0, :, 0:3, 0:3].amax(dim=(1, 2)))
    assert torch.equal(pooled[0, :, 15, 15], x[0, :, 30:32, 30:32].amax(dim=(1, 2)))
    average = net.features[5](x[:, :, :16, :16])
    assert average.shape == (1, 32, 8, 8)
    assert torch.allclose(average[0, :, 7, 7], x[0, :, 14:16, 14:16].mean(dim=(1, 2)))  # cut window: its own size


def test_raw_inputs_are_only_centred_on_the_mean_image():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    raw = Inputs(images, chunk=3)
    assert raw.std == 1.0
    assert torch.allclose(raw(images), images.float() - images.double().mean(0).float(), atol=1e-4)


def test_the_authors_update_gives_biases_twice_the_weights_learning_rate(tmp_path):
    data = load_images(str(make_image_folder(tmp_path, per_class=4)))
    run = SmallRun(data, "relu", lr=0.01, batch_size=8, protocol=figure1.PROTOCOLS["authors"])
    weights, biases = run.optimizer.param_groups
    assert weights["lr"] == 0.01 and biases["lr"] == 0.02 and weights["momentum"] == biases["momentum"] == 0.9
    assert all(g["weight_decay"] == 0 for g in run.optimizer.param_groups)  # no regularisation
    assert {id(p) for p in biases["params"]} == {id(m.bias) for m in run.model.modules() if hasattr(m, "bias")
                                                   and isinstance(m.bias, torch.Tensor)}
    bias = run.model.classifier.bias
    before = bias.detach().clone()
    run.train(1)  # one epoch of 8 images in batches of 8: one step, first momentum step is -lr * gradient
    x = run.inputs(data.images)
    run2 = SmallRun(data, "relu", lr=0.01, batch_size=8, protocol=figure1.PROTOCOLS["authors"])
    idx = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(run2.model(x[idx]), data.labels[idx])
    grad = torch.autograd.grad(loss, run2.model.classifier.bias)[0]
    assert torch.allclose(bias.detach(), before - 0.02 * grad, atol=1e-6)
    assert figure1.PROTOCOLS["standardised"]["bias_lr"] == 1.0


def fake_training(best_lr):
    """SmallRun.train replaced: the training error of a candidate grows with its distance from best_lr."""
    import math

    def train(self, epochs, desc="", stop=None, partial=None):
        error = 30 + 10 * abs(math.log10(self.lr / best_lr))
        self.points += [{"epoch": self.epochs_done + 1 + i, "train_error": error, "seconds": 1.0} for i in range(epochs)]
        self.epochs_done += epochs
        return self.points
    return train


@pytest.mark.parametrize("best, chosen, tries", [(0.8, 1.0, 5), (1.2e-4, 1e-4, 5), (0.01, 0.01, 3)])
def test_the_search_grows_its_grid_until_the_winner_is_inside(tmp_path, monkeypatch, best, chosen, tries):
    monkeypatch.setattr(SmallRun, "train", fake_training(best))
    data = load_images(str(make_image_folder(tmp_path, per_class=2)))
    store = RunStore(None, {}, figure1.RUN)
    lr, _, record = search_lr(data, "tanh", (0.001, 0.01, 0.1), 1, store, segments=1, batch_size=4)
    assert lr == pytest.approx(chosen)
    tried = [g["lr"] for g in record["grid"]]
    assert record["inside"] and tried[0] < lr < tried[-1]
    assert tried == sorted(tried) and len(tried) == tries


def test_speedup_is_per_seed_and_a_lower_bound_when_tanh_misses_25_percent():
    def run(seed, errors):
        points = curve(errors)
        return {"seed": seed, "points": points, "crossing_25": crossing(points), "epochs": len(errors)}

    relu = [run(0, [40, 20]), run(1, [50, 30, 20])]  # 25% at epochs 1.75 and 2.5
    tanh = [run(0, [60, 50, 40, 30, 20, 10, 5]), run(1, [60, 50, 40, 30, 26])]  # 4.5; never (5 epochs)
    s = speedup(relu, tanh)
    assert [p["epochs"] for p in s["per_seed"]] == pytest.approx([4.5 / 1.75, 5 / 2.5])
    assert s["epochs"] == pytest.approx((4.5 / 1.75 + 2.0) / 2) and s["lower_bound"]
    assert s["min"] == pytest.approx(2.0) and s["max"] == pytest.approx(4.5 / 1.75)


def test_a_run_stops_the_given_number_of_epochs_after_it_crosses(tmp_path, monkeypatch):
    data = load_images(str(make_image_folder(tmp_path, per_class=4)))
    run = SmallRun(data, "relu", lr=0.01, batch_size=8, segments=1)
    monkeypatch.setattr(figure1, "crossing", lambda points: {"epoch": 1.5, "seconds": 0.0} if len(points) >= 2 else None)
    run.train(6, stop=stop_after(2))
    assert run.epochs_done == 4  # crossed at 1.5: epoch 4 is the first at least 2 epochs past it


def test_standardise_subtracts_the_mean_image_and_divides_by_one_std():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    s = Inputs(images, divide=True, chunk=3)
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


def test_an_image_folder_is_read_as_prepare_reads_it_squashed_whole_to_the_experiment_size(tmp_path):
    root = make_image_folder(tmp_path, per_class=2) / "train"
    first = sorted((root / "bright").iterdir())[0]
    with Image.open(first) as image:  # the experiments' protocol: the whole image resized, no crop
        expected = np.asarray(image.convert("RGB").resize((16, 16), Image.BOX)).transpose(2, 0, 1).copy()
    assert torch.equal(load_images(str(root), size=16).images[0], torch.from_numpy(expected))
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(root / "dark" / "z-clear.png")  # transparent: white
    assert load_images(str(root)).images[-1].min() == 255
    (root / "dark" / "z-clear.png").write_bytes(first.read_bytes()[:60])
    with pytest.raises(UserError, match=r"z-clear\.png: not a readable image \(.*truncated"):
        load_images(str(root))
    (root / "dark" / "z-clear.png").unlink()
    os.mkfifo(root / "dark" / "z-fifo.png")  # never opened for reading: that would wait for a writer
    with pytest.raises(UserError, match=r"z-fifo\.png: not a readable image \(not a regular file \(a FIFO\)\)"):
        load_images(str(root))


def test_training_error_points_are_recorded_per_segment_with_growing_seconds(tmp_path):
    data = load_images(str(make_image_folder(tmp_path)))
    run = SmallRun(data, "relu", lr=0.01, batch_size=8, segments=3)
    points = run.train(2)
    assert [p["epoch"] for p in points] == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    assert all(a["seconds"] < b["seconds"] for a, b in zip(points, points[1:]))


def test_relu_vs_tanh_command_writes_figure_and_json_per_seed_and_resumes(tmp_path, capsys, monkeypatch):
    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "out"
    args = ["experiment", "relu-vs-tanh", "--data", data, "--epochs", 2, "--lrs", 0.01, "--search-epochs", 1,
            "--seeds", 0, 1, "--batch-size", 8, "--out", out, "--device", "cpu"]
    proc = alexnet_command(capsys, *args, "--json", tmp_path / "numbers.json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "numbers.json").read_text())
    assert json.loads((out / "relu-vs-tanh.json").read_text()) == result
    assert (out / "figure1.png").stat().st_size > 0
    assert result["images"] == 16 and result["seeds"] == [0, 1]
    assert result["protocol"] == {"inputs": "raw", "init": "authors", "bias_lr": 2.0}  # the default
    for activation in ("relu", "tanh"):
        search = result["search"][activation]
        assert [g["lr"] for g in search["grid"]] == [0.01] == [search["chosen"]]
        runs = result["runs"][activation]
        assert [r["seed"] for r in runs] == [0, 1] and {r["lr"] for r in runs} == {search["chosen"]}
        assert all(r["epochs"] == 2 and r["crossing_25"] == crossing(r["points"]) for r in runs)
        assert runs[0]["points"] != runs[1]["points"]  # another seed, another run
    assert len(result["speedup"]["per_seed"]) == 2
    assert "seed 1" in proc.stdout

    # run again: every run is read back, nothing trains; a removed record is trained again, alone
    trained = []
    original = SmallRun.train
    monkeypatch.setattr(SmallRun, "train", lambda self, *a, **k: trained.append((self.activation, self.seed)) or
                        original(self, *a, **k))
    assert alexnet_command(capsys, *args).returncode == 0 and trained == []
    (out / "runs" / f"run-tanh-lr{result['search']['tanh']['chosen']:g}-seed1.json").unlink()
    assert alexnet_command(capsys, *args).returncode == 0 and trained == [("tanh", 1)]
    again = json.loads((out / "relu-vs-tanh.json").read_text())["runs"]
    errors = lambda runs: {a: [[p["train_error"] for p in r["points"]] for r in rs] for a, rs in runs.items()}
    assert errors(again) == errors(result["runs"])  # the retrained run is the same run (seconds aside)
    # another budget is another experiment: its runs are not taken for these
    assert alexnet_command(capsys, *args[:4], "--epochs", 1, *args[6:]).returncode == 0
    assert ("relu", 0) in trained


def test_the_runs_of_one_activation_per_process_make_one_figure(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "out"
    args = ["experiment", "relu-vs-tanh", "--data", data, "--epochs", 1, "--lrs", 0.01, "--batch-size", 8,
            "--seeds", 0, "--out", out, "--device", "cpu", "--protocol", "standardised"]
    proc = alexnet_command(capsys, *args, "--activations", "tanh")
    assert proc.returncode == 0 and "run again with both" in proc.stdout and not (out / "figure1.png").exists()
    searched = sorted(p.name for p in (out / "runs").glob("search-*"))
    assert searched == ["search-tanh-lr0.01-seed0.json"]
    # a later seed in its own process reuses the first seed's search
    later = [a if a != 0 else 1 for a in args] + ["--search-seed", 0, "--activations", "tanh"]  # --seeds 1
    assert alexnet_command(capsys, *later).returncode == 0
    assert sorted(p.name for p in (out / "runs").glob("search-*")) == searched
    assert (out / "runs" / "run-tanh-lr0.01-seed1.json").is_file()
    assert alexnet_command(capsys, *args, "--activations", "relu").returncode == 0
    assert alexnet_command(capsys, *args).returncode == 0 and (out / "figure1.png").is_file()
    result = json.loads((out / "relu-vs-tanh.json").read_text())
    assert result["protocol"] == {"inputs": "standardised", "init": "pytorch", "bias_lr": 1.0}


def edit(change):
    """A run record edited by hand: ``change`` applied to its JSON, the file's name kept."""
    def damage(path):
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))
    return damage


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(path.read_bytes()[:40]), "Expecting"),  # cut short, as by a full disk
    (edit(lambda r: r["run"].update(lr="0.01")), "(run.lr: not a number)"),  # a number replaced by a string
    (edit(lambda r: r["run"].pop("points")), "(run: no field 'points')"),  # a list removed
    (edit(lambda r: r["run"]["points"][0].update(train_error=None)), "(run.points[0].train_error: not a number)")])
def test_a_damaged_run_record_is_refused_by_name_and_kept_until_deleted(tmp_path, capsys, damage, problem):
    data = make_image_folder(tmp_path / "imgs", per_class=4)
    out = tmp_path / "out"
    args = ["experiment", "relu-vs-tanh", "--data", data, "--epochs", 1, "--lrs", 0.01, "--search-epochs", 1,
            "--seeds", 0, "--batch-size", 8, "--out", out, "--device", "cpu"]
    assert alexnet_command(capsys, *args).returncode == 0
    path = out / "runs" / "run-tanh-lr0.01-seed0.json"
    damage(path)
    edited = path.read_bytes()
    proc = alexnet_command(capsys, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{path}: not a run record " in proc.stderr and problem in proc.stderr
    assert "; delete it to redo that run" in proc.stderr and proc.stderr.count("\n") == 1
    assert path.read_bytes() == edited  # kept: nothing trained over it
    path.unlink()  # as the message says: the run is redone
    assert alexnet_command(capsys, *args).returncode == 0 and "lr" in json.loads(path.read_text())["run"]


def test_a_run_under_way_in_another_process_is_refused_by_name_and_the_others_are_shared(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs", per_class=4)
    out = tmp_path / "out"
    args = ["experiment", "relu-vs-tanh", "--data", data, "--epochs", 1, "--lrs", 0.01, "--search-epochs", 1,
            "--seeds", 0, "--batch-size", 8, "--out", out, "--device", "cpu"]
    (out / "partial").mkdir(parents=True)
    held = os.open(out / "partial" / "run-tanh-lr0.01-seed0.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a process training that run holds it
    try:
        proc = alexnet_command(capsys, *args)
    finally:
        os.close(held)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{out / 'runs' / 'run-tanh-lr0.01-seed0'} is being written by another process (pid {os.getpid()})" \
        in proc.stderr
    assert (out / "runs" / "run-relu-lr0.01-seed0.json").exists()  # the runs nobody held were trained
    assert alexnet_command(capsys, *args).returncode == 0  # the holder gone, the run is trained


def test_a_run_killed_after_an_epoch_continues_from_its_saved_state(tmp_path, capsys, monkeypatch):
    from alexnet.analysis import smalltrain

    data = make_image_folder(tmp_path / "imgs", per_class=4)
    args = ["experiment", "relu-vs-tanh", "--data", data, "--epochs", 3, "--lrs", 0.01, "--search-epochs", 1,
            "--seeds", 0, "--batch-size", 8, "--device", "cpu", "--activations", "relu", "--out"]
    assert alexnet_command(capsys, *args, tmp_path / "whole").returncode == 0
    real_save = smalltrain.atomic_torch_save

    def save_then_die(state, path):
        real_save(state, path)
        raise KeyboardInterrupt  # killed once epoch 2 of the run is saved (the search's 1 carried over)

    monkeypatch.setattr(smalltrain, "atomic_torch_save", save_then_die)
    assert alexnet_command(capsys, *args, tmp_path / "split").returncode != 0
    assert (tmp_path / "split" / "partial" / "run-relu-lr0.01-seed0.pt").is_file()
    monkeypatch.setattr(smalltrain, "atomic_torch_save", real_save)
    trained = []
    monkeypatch.setattr(SmallRun, "train", lambda self, epochs, *a, **k: trained.append(epochs))
    assert alexnet_command(capsys, *args, tmp_path / "split").returncode == 0
    assert trained == [1]  # only the third epoch was left
    assert not (tmp_path / "split" / "partial" / "run-relu-lr0.01-seed0.pt").exists()


@pytest.mark.parametrize("option, value", [("--lrs", "nan"), ("--lrs", "inf"), ("--batch-size", "0"),
                                           ("--bias-lr", "nan"), ("--after-crossing", "nan"), ("--epochs", "0"),
                                           ("--seeds", "-1")])
def test_option_values_that_cannot_run_are_refused_by_name_before_anything_trains(tmp_path, capsys, option, value):
    data = make_image_folder(tmp_path / "imgs", per_class=2)
    proc = alexnet_command(capsys, "experiment", "relu-vs-tanh", "--data", data, "--epochs", 1, option, value,
                           "--out", tmp_path / "out", "--device", "cpu")
    assert proc.returncode == 2 and option in proc.stderr and value in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_json_to_standard_output_leaves_nothing_else_there(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs", per_class=4)
    proc = alexnet_command(capsys, "experiment", "relu-vs-tanh", "--data", data, "--epochs", 1, "--lrs", 0.01,
                           "--search-epochs", 1, "--seeds", 0, "--batch-size", 8, "--out", tmp_path / "out",
                           "--device", "cpu", "--json", "-")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == json.loads((tmp_path / "out" / "relu-vs-tanh.json").read_text())  # as | jq
    assert "seed 0: not 25% within 1 epoch (" in proc.stderr and "written:" in proc.stderr  # for the reader


def test_figure1_raises_its_axis_over_the_papers_to_show_curves_above_75_percent():
    from alexnet.analysis.figure1 import draw_figure1

    def result(errors):
        return {"threshold": 25.0, "epochs": 2, "runs": {"relu": [{"lr": 0.01, "points": curve(errors)}]}}

    ax = draw_figure1(result([60, 20])).axes[0]
    assert ax.get_ylim() == (0, 0.75) and "top of the paper's axis" not in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = draw_figure1(result([90.2, 20])).axes[0]
    assert ax.get_ylim() == (0, 0.95)  # every point shown, the paper's top marked
    assert "top of the paper's axis" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = draw_figure1({**result([90.2]), "epochs": 1}).axes[0]  # a one-epoch run: one point, still seen
    assert [line.get_marker() for line in ax.lines if line.get_label().startswith("ReLU")] == ["o"]
    assert [line.get_marker() for line in draw_figure1(result([60, 20])).axes[0].lines if line.get_label() == "ReLU (lr 0.01)"] == ["None"]


def test_the_sweep_measures_the_ratio_for_each_input_scaling_init_and_lr_choice(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs", per_class=4)
    out = tmp_path / "out"
    common = ["experiment", "relu-vs-tanh", "--data", data, "--epochs", 1, "--lrs", 0.003, 0.03, "--search-epochs", 1,
              "--batch-size", 8, "--out", out, "--device", "cpu", "--sweep"]
    for part in (["raw-authors", "raw-pytorch"], ["standardised-authors", "standardised-pytorch"]):  # two processes
        proc = alexnet_command(capsys, *common, *part)
        assert proc.returncode == 0, proc.stderr
        assert "run again with --sweep alone" in proc.stdout and not (out / "sweep.json").exists()
        assert sorted(p.name for p in (out / "sweep").iterdir())[-len(part):] == sorted(part)
    records = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    assert len(records) >= 4 * 6  # per setting: at least 4 search candidates and 2 runs
    proc = alexnet_command(capsys, *common)  # the last call: reads what the parts stored
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.parent.name == "runs"} == records
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "sweep.json").read_text())
    assert sorted(result["curves"]) == sorted(SETTINGS)
    for r in result["rows"]:
        curves = result["curves"][f"{r['inputs']}-{r['init']}"]
        relu = curves["relu"]
        assert relu["lr"] == r["relu_lr"] and len(relu["epoch"]) == len(relu["train_error"]) > 0
        if r["tanh_lr_choice"] == "ReLU's":  # drawn dotted only when it is another run than tanh's own
            assert ("tanh_at_relu_lr" in curves) == (curves["tanh"]["lr"] != r["relu_lr"])
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert {(r["inputs"], r["init"], r["tanh_lr_choice"]) for r in rows} == {
        (i, n, c) for i in ("raw", "standardised") for n in ("authors", "pytorch") for c in ("own best", "ReLU's")}
    for r in rows:
        assert r["tanh_lr_choice"] == "own best" or r["tanh_lr"] == r["relu_lr"]
    table = (out / "sweep.md").read_text()
    assert table.count("\n| raw |") == 4 and table.count("\n| standardised |") == 4


@pytest.mark.parametrize("option, value, message", [("--bias-lr", "0", "--bias-lr"), ("--lrs", "-1", "--lrs"),
                                                     ("--after-crossing", "-1", "--after-crossing")])
def test_relu_vs_tanh_rejects_bad_settings_by_name(tmp_path, capsys, option, value, message):
    data = make_image_folder(tmp_path / "imgs", per_class=2)
    proc = alexnet_command(capsys, "experiment", "relu-vs-tanh", "--data", data, option, value, "--out", tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


def test_experiment_help_names_every_experiment(capsys):
    with pytest.raises(SystemExit):
        alexnet_command(capsys, "experiment", "--help")
    text = capsys.readouterr().out
    description = text.split("positional arguments")[0]
    assert all(name in description for name in ("relu-vs-tanh", "lrn", "ablations"))


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


def _sweep_run(lr, cross, last_epoch):
    return {"lr": lr, "seed": 0, "epochs": last_epoch, "crossing_25": {"epoch": cross, "seconds": cross} if cross else None,
            "points": [{"epoch": last_epoch, "train_error": 20.0 if cross else 40.0, "seconds": last_epoch}]}


def test_a_sweep_row_bounds_the_ratio_whichever_activation_missed_25_percent():
    from alexnet.analysis.figure1_sweep import _row, ratio_text

    both = _row("raw", "authors", "own best", _sweep_run(0.003, 5.0, 6), _sweep_run(0.03, 20.0, 21), 35)
    assert both["ratio"] == pytest.approx(4.0) and not both["lower_bound"] and not both["upper_bound"]
    assert ratio_text(both) == "4.0x"
    slow_tanh = _row("raw", "authors", "own best", _sweep_run(0.003, 5.0, 6), _sweep_run(0.03, None, 35), 35)
    assert slow_tanh["ratio"] == pytest.approx(7.0) and ratio_text(slow_tanh) == ">= 7.0x"
    slow_relu = _row("standardised", "authors", "own best", _sweep_run(0.09, None, 35), _sweep_run(0.03, 20.09, 21), 35)
    assert slow_relu["upper_bound"] and slow_relu["ratio"] == pytest.approx(20.09 / 35)
    assert ratio_text(slow_relu) == "<= 0.6x" and slow_relu["relu_epochs_to_25"] == "> 35"
    neither = _row("raw", "pytorch", "ReLU's", _sweep_run(0.001, None, 35), _sweep_run(0.001, None, 35), 35)
    assert neither["ratio"] is None and ratio_text(neither) == "–"
