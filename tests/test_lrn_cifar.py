"""`alexnet experiment lrn`: section 3.3's CIFAR-10 experiment in cuda-convnet's setup (the
layers-conv-local nets, their initialisation, update and ten-view test), on tiny data."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from alexnet.analysis import lrn_cifar, smalltrain
from alexnet.analysis.lrn_cifar import INIT_STD, WEIGHT_DECAY, ConvLocalNet, make_optimizer
from alexnet.analysis.imageset import ImageSet, load_train_test
from alexnet.analysis.localconn import LocallyConnected2d
from alexnet.errors import UserError
from tests import kit
from tests.kit import alexnet_command


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: these nets are tiny, and on a busy two-core machine a second OpenMP thread
    that waits for a core costs far more than it brings."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def local_loop(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    """The locally connected layer's definition, one output position at a time."""
    k, s, size = layer.kernel_size, layer.stride, layer.out_size
    padded = nn.functional.pad(x, [layer.padding] * 4)
    out = torch.zeros(x.shape[0], layer.out_channels, size, size, dtype=x.dtype)
    for r in range(size):
        for c in range(size):
            window = padded[:, :, r * s : r * s + k, c * s : c * s + k].reshape(x.shape[0], -1)
            out[:, :, r, c] = window @ layer.weight[r * size + c].T + layer.bias[:, r, c]
    return out


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0), (1, 0)])
def test_the_locally_connected_layer_and_its_gradients_equal_a_loop_over_positions(stride, padding):
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, 5, 3, stride=stride, padding=padding).double()
    nn.init.normal_(layer.bias)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 4, layer.out_size, layer.out_size, dtype=torch.float64)
    fast = torch.autograd.grad(layer(x), [x, layer.weight, layer.bias], grad)
    slow_y = local_loop(layer, x)
    slow = torch.autograd.grad(slow_y, [x, layer.weight, layer.bias], grad)
    assert torch.allclose(layer(x), slow_y)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b)


def test_filters_are_not_shared_between_positions():
    layer = LocallyConnected2d(1, 1, 3, 1)  # 1x1 windows: each pixel its own weight
    with torch.no_grad():
        layer.weight.copy_(torch.arange(9.0).reshape(9, 1, 1))
    assert torch.equal(layer(torch.ones(1, 1, 3, 3)), torch.arange(9.0).reshape(1, 1, 3, 3))


def test_local_layer_shapes_and_a_wrong_input_size_is_a_clear_error():
    layer = LocallyConnected2d(64, 32, 6, 3, padding=1)
    assert layer.weight.shape == (36, 32, 64 * 9) and layer.bias.shape == (32, 6, 6)
    assert LocallyConnected2d(2, 3, 7, 3, stride=2).out_size == 3
    with pytest.raises(ValueError, match=r"expects \[N, 64, 6, 6\].*\(2, 64, 7, 7\)"):
        layer(torch.zeros(2, 64, 7, 7))
    with pytest.raises(ValueError, match="does not fit"):
        LocallyConnected2d(1, 1, 2, 5)


def test_the_conv_local_net_pools_24_to_12_to_6_and_normalises_only_when_asked():
    net = ConvLocalNet(norm=True)
    x = torch.randn(2, 3, 24, 24)
    assert net.pool1(net.conv1(x)).shape == (2, 64, 12, 12)
    assert net.pool2(net.conv2(torch.randn(2, 64, 12, 12))).shape == (2, 64, 6, 6)
    assert net(x).shape == (2, 10)
    assert isinstance(ConvLocalNet(norm=False).norm1, nn.Identity)
    assert sum(isinstance(m, LocallyConnected2d) for m in net.modules()) == 2


def test_each_layer_starts_from_its_own_gaussian_and_biases_at_zero():
    net = ConvLocalNet()
    net.reset_parameters(torch.Generator().manual_seed(0))
    # layers-conv-local-11pct/13pct initW: conv1 0.0001, conv2 0.01, local3 0.04, local4 0.04, fc10 0.01
    assert INIT_STD == {"conv1": 1e-4, "conv2": 0.01, "local3": 0.04, "local4": 0.04, "fc10": 0.01}
    for name, std in INIT_STD.items():
        layer = getattr(net, name)
        assert layer.weight.std().item() == pytest.approx(std, rel=0.1)
        assert abs(layer.weight.mean().item()) < std / 5
        assert torch.count_nonzero(layer.bias) == 0


def test_one_seed_gives_both_variants_the_same_initial_weights():
    nets = [ConvLocalNet(norm=norm) for norm in (False, True)]
    for net in nets:
        net.reset_parameters(torch.Generator().manual_seed(3))
    a, b = (net.state_dict() for net in nets)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_response_norm_is_cuda_convnets_one_plus_scale_over_size():
    net = ConvLocalNet(norm=True)
    x = torch.rand(1, 7, 2, 2) * 30
    y = net.norm1(x)
    for c in range(7):
        window = (x[:, max(0, c - 2) : c + 3] ** 2).sum(1)
        expected = x[:, c] / (1 + 0.001 / 5 * window) ** 0.75
        assert torch.allclose(y[:, c], expected)


def test_the_update_is_cuda_convnets_per_layer_rates_and_weight_decay():
    optimizer = make_optimizer(ConvLocalNet(), lr=0.001)
    groups = {g["name"]: g for g in optimizer.param_groups}
    for name, decay in WEIGHT_DECAY.items():
        assert groups[f"{name}.weight"]["lr"] == 0.001 and groups[f"{name}.weight"]["weight_decay"] == decay
        assert groups[f"{name}.bias"]["lr"] == 0.002 and groups[f"{name}.bias"]["weight_decay"] == 0
        assert groups[f"{name}.weight"]["momentum"] == 0.9
    assert WEIGHT_DECAY == {"conv1": 0, "conv2": 0, "local3": 0.004, "local4": 0.004, "fc10": 0.004}


def test_training_crops_are_raw_pixels_minus_the_mean_at_the_same_window_mirrored_together():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    inputs = smalltrain.Inputs(images)
    mean = inputs.mean
    assert torch.allclose(mean, images.double().mean(0).float())
    top, left, flip = torch.tensor([0, 8, 3]), torch.tensor([8, 0, 5]), torch.tensor([0, 1, 1])
    out = inputs(images, torch.stack([top, left, flip], 1), 24)
    for i in range(3):
        t, l = int(top[i]), int(left[i])
        expected = images[i, :, t : t + 24, l : l + 24].float() - mean[:, t : t + 24, l : l + 24]
        assert torch.equal(out[i], expected.flip(2) if flip[i] else expected)  # no division by a std


class Fixed(nn.Module):
    """A stand-in net whose logits depend on the view (its mean pixel per channel)."""

    def forward(self, x):
        return torch.cat([x.mean((2, 3)), x[:, :, :3, :5].mean((2, 3))], 1) / 20


def test_ten_view_test_averages_the_softmax_of_the_four_corners_centre_and_their_mirrors():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    data = ImageSet(images, torch.tensor([0, 1, 2, 3, 4, 5]), [str(c) for c in range(6)])
    mean = smalltrain.mean_image(images)
    model = Fixed()
    x = images.float() - mean
    corners = [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]
    views = [x[:, :, t : t + 24, l : l + 24] for t, l in corners]
    views += [v.flip(3) for v in views]
    probs = torch.stack([model(v).softmax(1) for v in views]).mean(0)
    expected_ten = 100 * (probs.argmax(1) != data.labels).float().mean().item()
    expected_centre = 100 * (model(views[4]).argmax(1) != data.labels).float().mean().item()
    errors = smalltrain.test_errors(model, data, smalltrain.Inputs(images), 24, "cpu", batch=4)
    assert errors == pytest.approx({"ten_view": expected_ten, "centre": expected_centre})


def png_folder(root, classes=("cat", "dog"), per_class=20, seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for n in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / c / f"{n}.png")
    return root


def test_test_data_is_read_from_its_own_folder_and_its_classes_must_match(tmp_path):
    train = png_folder(tmp_path / "train", per_class=4)
    png_folder(tmp_path / "test", per_class=3, seed=1)
    got_train, got_test, where = load_train_test(str(train), test_data=str(tmp_path / "test"))
    assert len(got_train) == 8 and len(got_test) == 6 and got_test.classes == ["cat", "dog"]
    assert got_test.images.shape == (6, 3, 32, 32) and "test" in where
    png_folder(tmp_path / "other", classes=("cat", "eel"), per_class=1)
    with pytest.raises(UserError, match="only in training: dog; only in the test folder: eel"):
        load_train_test(str(train), test_data=str(tmp_path / "other"))


def test_holdout_takes_a_share_of_the_training_images_instead(tmp_path):
    train = png_folder(tmp_path / "train", per_class=5)
    got_train, got_test, _ = load_train_test(str(train), holdout=0.2)
    assert (len(got_train), len(got_test)) == (8, 2)
    with pytest.raises(UserError, match="between 0 and 1"):
        load_train_test(str(train), holdout=1.5)


def test_a_prepared_cifar10_is_tested_on_its_val_split_the_official_test_batch(tmp_path):
    archive = kit.cifar10_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=2)
    prepared = kit.run_prepare(archive, tmp_path / "out", size=32, encoding="raw")
    train, test, where = load_train_test(str(prepared))
    assert len(train) == 10 and len(test) == 2 and "val split" in where
    assert np.array_equal(test.images[1].permute(1, 2, 0).numpy(), kit.cifar_pixels(5, 2)[1])  # test_batch's


def test_an_image_folder_without_a_test_set_is_a_one_line_error(tmp_path, capsys):
    train = png_folder(tmp_path / "train", per_class=2)
    proc = alexnet_command(capsys, "experiment", "lrn", "--data", train, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "pass --test-data FOLDER" in proc.stderr and "--holdout" in proc.stderr


@pytest.fixture
def folders(tmp_path):
    png_folder(tmp_path / "data" / "train")
    png_folder(tmp_path / "data" / "test", seed=1)
    return tmp_path / "data"


def lrn_args(folders, out, *more, seeds=(0, 1)):
    return ["experiment", "lrn", "--data", folders / "train", "--test-data", folders / "test", "--epochs", 1,
            "--seeds", *seeds, "--batch-size", 16, "--anneal", 0, 0, "--out", out, *more]


def test_the_command_trains_both_nets_per_seed_and_writes_the_table_figure_and_numbers(folders, tmp_path, capsys):
    out = tmp_path / "out"
    proc = alexnet_command(capsys, *lrn_args(folders, out, "--json", tmp_path / "numbers.json"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "lrn.json").read_text())
    assert json.loads((tmp_path / "numbers.json").read_text()) == result
    assert (result["epochs"], result["seeds"], result["train_images"], result["test_images"]) == (1, [0, 1], 40, 40)
    assert result["paper"]["test_error"] == {"without": 13.0, "with": 11.0}
    assert sorted((r["variant"], r["seed"]) for r in result["runs"]) == [
        ("with", 0), ("with", 1), ("without", 0), ("without", 1)]
    for variant in ("without", "with"):
        for view in ("ten_view", "centre"):
            spread = result["variants"][variant][view]
            assert spread["mean"] == pytest.approx(np.mean(spread["values"]))
            assert spread["std"] == pytest.approx(np.std(spread["values"], ddof=1))
    by = {(r["variant"], r["seed"]): r["test_error_ten_view"] for r in result["runs"]}
    assert result["difference"]["ten_view"]["values"] == pytest.approx([by["without", s] - by["with", s] for s in (0, 1)])
    assert "over 2 seeds at 1 epoch" in result["verdict"] and "the paper: 2 points lower" in result["verdict"]
    assert result["verdict"] in proc.stdout
    table = (out / "lrn.md").read_text()
    assert "| paper | 13" in table and result["verdict"] in table
    assert (out / "lrn.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((out / "runs").glob("*.json"))) == 4 and not list((out / "partial").glob("*"))


def test_running_again_redoes_only_the_runs_whose_records_are_missing(folders, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert alexnet_command(capsys, *lrn_args(folders, out, seeds=(0,))).returncode == 0
    first = json.loads((out / "lrn.json").read_text())
    trained = []
    real = lrn_cifar.train_run

    def spy(train, test, key, device, partial=None):
        trained.append((key["variant"], key["seed"]))
        return real(train, test, key, device, partial)

    monkeypatch.setattr(lrn_cifar, "train_run", spy)
    assert alexnet_command(capsys, *lrn_args(folders, out, seeds=(0,))).returncode == 0 and trained == []
    next(out.glob("runs/with-seed0-*.json")).unlink()
    assert alexnet_command(capsys, *lrn_args(folders, out, seeds=(0,))).returncode == 0 and trained == [("with", 0)]
    again = json.loads((out / "lrn.json").read_text())
    assert again["variants"] == first["variants"]  # the redone run came out the same
    assert alexnet_command(capsys, *lrn_args(folders, out, "--lr", 0.002, seeds=(0,))).returncode == 0
    assert len(trained) == 3  # another rate is another set of runs


def test_a_run_killed_after_an_epoch_continues_from_it_to_the_same_result(folders, tmp_path, monkeypatch):
    train, test, _ = load_train_test(str(folders / "train"), test_data=str(folders / "test"))
    # three epochs, one at each rate: killed after the second (at lr / 10), so the partial's
    # optimizer holds an annealed rate, and the resumed third epoch must still run at lr / 100
    key = lrn_cifar.run_key("with", 0, 3, 0.001, 16, train, test, "x", anneal=(1, 1))
    whole = lrn_cifar.train_run(train, test, key, "cpu")
    assert [h["lr"] for h in whole["history"]] == pytest.approx([0.001, 0.0001, 0.00001])
    partial = {"path": tmp_path / "partial.pt", "run": {"name": "x"}}
    real_save = smalltrain.atomic_torch_save
    saves = []

    def save_then_die(state, path):
        real_save(state, path)
        saves.append(state["epochs_done"])
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(smalltrain, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        lrn_cifar.train_run(train, test, key, "cpu", partial)
    monkeypatch.setattr(smalltrain, "atomic_torch_save", real_save)
    assert torch.load(partial["path"], weights_only=True)["epochs_done"] == 2
    resumed = lrn_cifar.train_run(train, test, key, "cpu", partial)
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in whole["history"]])
    assert resumed["test_error_ten_view"] == whole["test_error_ten_view"]
    assert [h["lr"] for h in resumed["history"]] == pytest.approx([h["lr"] for h in whole["history"]])


def test_the_budget_ends_with_the_anneal_epochs_at_a_tenth_then_a_hundredth():
    assert [lrn_cifar.rate_factor(e, 10, (1, 1)) for e in range(10)] == [1.0] * 8 + [0.1, 0.01]
    assert [lrn_cifar.rate_factor(e, 10, (2, 3)) for e in range(10)] == [1.0] * 5 + [0.1] * 2 + [0.01] * 3
    assert [lrn_cifar.rate_factor(e, 4, (0, 0)) for e in range(4)] == [1.0] * 4
    assert lrn_cifar.ANNEAL == (10, 10)  # cuda-convnet's methodology: 10 epochs at each


def test_every_step_of_an_anneal_epoch_runs_at_the_scaled_rates_biases_still_twice(folders, monkeypatch):
    train, test, _ = load_train_test(str(folders / "train"), test_data=str(folders / "test"))
    seen = []
    real = lrn_cifar.make_optimizer

    def recording(model, lr):
        optimizer = real(model, lr)
        step = optimizer.step

        def spy(*args, **kwargs):
            seen.append({g["name"]: g["lr"] for g in optimizer.param_groups})
            return step(*args, **kwargs)

        optimizer.step = spy
        return optimizer

    monkeypatch.setattr(lrn_cifar, "make_optimizer", recording)
    key = lrn_cifar.run_key("without", 0, 3, 0.002, 20, train, test, "x", anneal=(1, 1))
    lrn_cifar.train_run(train, test, key, "cpu")
    per_epoch = len(seen) // 3
    assert per_epoch == 2 and len(seen) == 6  # 40 images, batches of 20
    for epoch, factor in enumerate([1.0, 0.1, 0.01]):
        for rates in seen[epoch * per_epoch : (epoch + 1) * per_epoch]:
            assert rates["conv1.weight"] == pytest.approx(0.002 * factor)
            assert rates["fc10.bias"] == pytest.approx(0.004 * factor)


@pytest.mark.parametrize("anneal, epochs", [((1, 1), 2), ((-1, 0), 3), ((3, 0), 3)])
def test_an_anneal_that_leaves_no_epoch_at_the_rate_is_a_clear_error(folders, tmp_path, capsys, anneal, epochs):
    args = lrn_args(folders, tmp_path / "out")
    args[args.index("--anneal") + 1 : args.index("--anneal") + 3] = anneal
    args[args.index("--epochs") + 1] = epochs
    proc = alexnet_command(capsys, *args)
    assert proc.returncode == 2 and f"--anneal {anneal[0]} {anneal[1]}" in proc.stderr
    assert f"--epochs ({epochs})" in proc.stderr and not (tmp_path / "out").exists()


def test_a_damaged_run_record_stops_with_its_name_and_is_not_trained_over(folders, tmp_path, capsys):
    out = tmp_path / "out"
    assert alexnet_command(capsys, *lrn_args(folders, out, seeds=(0,))).returncode == 0
    record = next(out.glob("runs/with-seed0-*.json"))
    record.write_text('{"key": ')  # cut short
    proc = alexnet_command(capsys, *lrn_args(folders, out, seeds=(0,)))
    assert proc.returncode == 2 and str(record) in proc.stderr and "not a run record" in proc.stderr
    assert record.read_text() == '{"key": '


def test_a_run_record_with_a_string_for_a_number_is_refused_by_name_and_kept(folders, tmp_path, capsys):
    out = tmp_path / "out"
    assert alexnet_command(capsys, *lrn_args(folders, out, seeds=(0,))).returncode == 0
    path = next(out.glob("runs/without-seed0-*.json"))
    record = json.loads(path.read_text())
    record["run"]["test_error_ten_view"] = "12.5"  # edited by hand: the key intact
    path.write_text(json.dumps(record))
    proc = alexnet_command(capsys, *lrn_args(folders, out, seeds=(0,)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{path}: not a run record (run.test_error_ten_view: not a number); delete it" in proc.stderr
    assert json.loads(path.read_text()) == record


def test_json_to_standard_output_carries_only_the_json(folders, tmp_path, capsys):
    proc = alexnet_command(capsys, *lrn_args(folders, tmp_path / "out", "--json", "-", seeds=(0,)))
    assert proc.returncode == 0
    result = json.loads(proc.stdout)  # what | jq reads
    assert result == json.loads((tmp_path / "out" / "lrn.json").read_text()) and result["verdict"] in proc.stderr


@pytest.mark.parametrize("option, value", [("--lr", "nan"), ("--lr", "inf"), ("--batch-size", "0"),
                                           ("--limit", "1")])
def test_option_values_that_cannot_run_are_refused_by_name(folders, tmp_path, capsys, option, value):
    args = lrn_args(folders, tmp_path / "out")
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    proc = alexnet_command(capsys, *args)
    assert proc.returncode == 2 and option in proc.stderr and value in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_the_command_line_defaults_are_the_protocols_and_stated_in_help(capsys):
    assert lrn_cifar.PAPER_EPOCHS["without"] == 160 and lrn_cifar.ANNEAL == (10, 10)
    assert lrn_cifar.LR == 0.001 and lrn_cifar.BATCH_SIZE == 128
    with pytest.raises(SystemExit):
        alexnet_command(capsys, "experiment", "lrn", "--help")
    text = " ".join(capsys.readouterr().out.split())
    for stated in ("default 160", "default 0 1 2", "default 0.001", "default 128", "default runs/lrn",
                   "default: cifar10", "default: off", "default 10 10"):
        assert stated in text


def test_the_figure_has_the_test_errors_beside_each_runs_training_curve_with_the_anneal_shaded():
    runs = [{"variant": v, "seed": s, "history": [{"epoch": e, "train_error": 60.0 - 5 * e - s} for e in (1, 2, 3, 4)]}
            for v in ("without", "with") for s in (0, 1)]
    spread = {"ten_view": {"mean": 40.0, "std": 1.0, "values": [39.0, 41.0]}}
    result = {"epochs": 4, "anneal": [1, 1], "runs": runs, "variants": {"without": spread, "with": spread}}
    bars, curves = lrn_cifar.draw_lrn(result).axes
    assert len(curves.get_lines()) == 4
    assert [list(line.get_ydata()) for line in curves.get_lines()][1] == [54.0, 49.0, 44.0, 39.0]
    (shade,) = curves.patches
    assert shade.get_x() == pytest.approx(2.5) and shade.get_width() == pytest.approx(2.0)  # epochs 3 and 4
    assert [t.get_text() for t in curves.get_legend().get_texts()] == ["without norm", "with norm",
                                                                       "lr / 10, then / 100"]
    assert not lrn_cifar.draw_lrn({**result, "anneal": [0, 0]}).axes[1].patches
    one = {**result, "epochs": 1, "anneal": [0, 0], "runs": [{**r, "history": r["history"][:1]} for r in runs]}
    bars, curves = lrn_cifar.draw_lrn(one).axes
    assert [line.get_marker() for line in curves.get_lines()] == ["o", "o", "x", "x"]  # one visible point per run
    assert curves.get_xlim() == pytest.approx((0.5, 1.5)) and [t for t in curves.get_xticks() if 0.5 <= t <= 1.5] == [1]
    assert bars.get_title().startswith("1 epoch each;")


def test_one_variant_per_process_shares_the_work_and_a_last_call_assembles_it(folders, tmp_path, capsys, monkeypatch):
    whole = tmp_path / "whole"
    assert alexnet_command(capsys, *lrn_args(folders, whole, seeds=(0,))).returncode == 0
    split = tmp_path / "split"
    proc = alexnet_command(capsys, *lrn_args(folders, split, "--variants", "with", seeds=(0,)))
    assert proc.returncode == 0 and "run again with both" in proc.stdout and not (split / "lrn.json").exists()
    assert [p.name.split("-")[0] for p in (split / "runs").glob("*.json")] == ["with"]
    assert alexnet_command(capsys, *lrn_args(folders, split, "--variants", "without", seeds=(0,))).returncode == 0
    trained = []
    monkeypatch.setattr(lrn_cifar, "train_run", lambda *a, **k: trained.append(a) or {})
    assert alexnet_command(capsys, *lrn_args(folders, split, seeds=(0,))).returncode == 0 and trained == []
    assembled, single = (json.loads((d / "lrn.json").read_text()) for d in (split, whole))
    assert assembled["variants"] == single["variants"] and assembled["difference"] == single["difference"]


def test_the_gpu_script_trains_each_run_in_its_own_process_and_assembles_them(folders, tmp_path):
    """benchmarks/lrn_gpu.sh, dry-run on the CPU (as a lent GPU machine would run it, from a packed
    archive): one process per (seed, net), then the table from their records."""
    import os
    import subprocess
    import sys
    import tarfile
    from pathlib import Path

    with tarfile.open(tmp_path / "cifar10.tar.gz", "w:gz") as archive:
        archive.add(folders / "train", "train")
        archive.add(folders / "test", "test")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DEVICE": "cpu", "EPOCHS": "2", "ANNEAL": "0 1", "SEEDS": "0", "PYTHON": sys.executable,
           "CIFAR": str(tmp_path / "cifar10.tar.gz"), "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(repo / "benchmarks" / "lrn_gpu.sh"), str(tmp_path / "res")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "res" / "lrn" / "numbers.json").read_text())
    assert (result["epochs"], result["anneal"], result["seeds"], result["test_images"]) == (2, [0, 1], [0], 40)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "res" / "lrn" / "runs").glob("*.json")) == ["with", "without"]
    assert {p.name for p in (tmp_path / "res").glob("lrn-*.log")} == {"lrn-without-0.log", "lrn-with-0.log"}
    assert "| paper | 13" in proc.stdout and "for 1 epoch, then 0 at lr / 10 and 1 at lr / 100" in proc.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("alexnet-lrn.")]  # its scratch folder went
