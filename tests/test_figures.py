"""`alexnet figures`: Figure 3's kernels and colour number, Figure 4's predictions and neighbours,
training curves (paper section 6.1)."""

import json
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import alexnet
from alexnet.analysis import drawing, figures, neighbours
from alexnet.analysis.colour import colour_specificity, compare_towers, random_kernel_specificity, tower_specificity
from alexnet.analysis.neighbours import extract_features, nearest
from alexnet.analysis.runs import read_metrics
from tests.kit import StandInDataset, alexnet_command, make_prepared, save_run, save_ten_class_run, tiny_alexnet


def random_kernels(rng, n, colour: bool):
    """Grey kernels (the same picture in R, G, B) or pure-colour ones (one channel only)."""
    pictures = rng.normal(size=(n, 1, 11, 11))
    if not colour:
        return np.repeat(pictures, 3, axis=1)
    kernels = np.zeros((n, 3, 11, 11))
    kernels[np.arange(n), rng.integers(0, 3, size=n)] = pictures[:, 0]
    return kernels


def test_grey_kernels_score_zero_and_single_channel_kernels_two_thirds():
    rng = np.random.default_rng(0)
    assert np.allclose(colour_specificity(random_kernels(rng, 10, colour=False)), 0, atol=1e-12)
    assert np.allclose(colour_specificity(random_kernels(rng, 10, colour=True)), 2 / 3)


def test_opponent_kernel_scores_one_and_zero_kernel_scores_zero():
    red_minus_green = np.zeros((1, 3, 11, 11))
    red_minus_green[0, 0], red_minus_green[0, 1] = 1.0, -1.0
    assert colour_specificity(red_minus_green)[0] == pytest.approx(1.0)
    assert colour_specificity(np.zeros((1, 3, 11, 11)))[0] == 0


def test_tower_specificity_separates_a_grey_tower_from_a_colour_tower():
    rng = np.random.default_rng(1)
    kernels = np.concatenate([random_kernels(rng, 48, False) + 0.05 * rng.normal(size=(48, 3, 11, 11)),
                              random_kernels(rng, 48, True)])
    towers = tower_specificity(kernels, towers=2)
    assert [t["kernels"] for t in towers] == [[0, 47], [48, 95]]
    assert towers[0]["mean_specificity"] < 0.05
    assert towers[1]["mean_specificity"] == pytest.approx(2 / 3)
    assert len(towers[1]["per_kernel"]) == 48


@pytest.mark.parametrize("size", [(11, 11), (3, 3)])
def test_random_gaussian_kernels_score_two_thirds_with_the_spread_of_a_beta_distribution(size):
    kernels = np.random.default_rng(7).normal(size=(20000, 3, *size))
    scores = colour_specificity(kernels)
    random = random_kernel_specificity(3, size)
    assert random["mean"] == pytest.approx(2 / 3)
    assert scores.mean() == pytest.approx(2 / 3, abs=5 * random["sd"] / np.sqrt(len(scores)))
    assert scores.std() == pytest.approx(random["sd"], rel=0.03)
    assert random_kernel_specificity(3, (11, 11))["sd"] == pytest.approx(0.0349, abs=1e-4)


def test_towers_differ_when_one_is_grey_and_the_other_colour_whichever_is_which():
    rng = np.random.default_rng(8)
    grey = random_kernels(rng, 48, False) + 0.05 * rng.normal(size=(48, 3, 11, 11))
    colour = random_kernels(rng, 48, True)
    random = random_kernel_specificity()
    for kernels, coloured in ((np.concatenate([grey, colour]), 2), (np.concatenate([colour, grey]), 1)):
        result = compare_towers(tower_specificity(kernels, 2), random)
        assert result["towers_differ"] and result["more_colour_specific"] == coloured
        assert result["line"].endswith("as the paper says (which tower takes colour is arbitrary)")
        assert f"tower {coloured} more colour-specific" in result["line"]


def test_towers_of_random_kernels_do_not_differ_and_sit_at_the_random_level():
    kernels = np.random.default_rng(9).normal(size=(96, 3, 11, 11))
    result = compare_towers(tower_specificity(kernels, 2), random_kernel_specificity())
    assert not result["towers_differ"] and result["more_colour_specific"] is None
    assert "(a random kernel 0.67): the towers do not differ" in result["line"]
    assert result["line"].endswith("not as the paper says, both at the level of random kernels")
    assert compare_towers(tower_specificity(kernels, 1), random_kernel_specificity()) is None


def test_kernel_mosaic_places_kernel_i_at_row_i_div_cols_and_scales_symmetrically():
    kernels = np.zeros((5, 3, 2, 2))
    kernels[3, 0] = 4.0  # pure red, positive: full red, the other channels mid-grey
    kernels[3, 1, 0, 0] = -4.0
    mosaic = drawing.kernel_mosaic(kernels, rows=2, cols=3, pad=1)
    assert mosaic.shape == (2 * 3 + 1, 3 * 3 + 1, 3)
    r, c = divmod(3, 3)
    cell = mosaic[1 + 3 * r : 3 + 3 * r, 1 + 3 * c : 3 + 3 * c]
    assert np.allclose(cell[..., 0], 1.0)
    assert cell[0, 0, 1] == 0.0 and cell[1, 1, 1] == 0.5
    assert np.allclose(mosaic[1:3, 1:3], 0.5)  # an all-zero kernel is mid-grey


def test_kernels_figure_has_one_block_of_48_per_tower(tmp_path):
    kernels = np.random.default_rng(2).normal(size=(96, 3, 11, 11))
    fig, layout = drawing.draw_kernels(kernels, towers=2, specificity=tower_specificity(kernels, 2))
    assert layout.panels == 2 and layout.items_per_panel == [48, 48]
    assert (layout.notes["rows"], layout.notes["cols"]) == (3, 16)
    assert len(fig.axes) == 2
    assert "colour specificity" in fig.axes[1].get_title()
    fig, _ = drawing.draw_kernels(kernels, towers=2, specificity=tower_specificity(kernels, 2), random_level=2 / 3)
    assert fig.axes[0].get_title().endswith("(random kernels: 0.67)")


def test_predictions_figure_draws_five_bars_per_image_with_the_true_label_red():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (20, 20, 3), dtype=np.uint8) for _ in range(6)]
    top5 = [[(f"class{j}", p) for j, p in zip(range(5), [0.5, 0.2, 0.1, 0.1, 0.1])] for _ in images]
    truths = ["class1"] * 5 + ["absent"]
    fig, layout = drawing.draw_predictions(images, top5, truths, cols=4)
    assert layout.panels == 6 and layout.items_per_panel == [5] * 6
    from matplotlib.colors import to_rgba

    red = [ax for ax in fig.axes for p in ax.patches if p.get_facecolor() == to_rgba("tab:red")]
    assert len(red) == 5  # one red bar in each image whose true label is among the five


def test_predictions_figure_has_a_legend_and_marks_a_true_class_outside_the_top_five():
    images = [np.zeros((20, 20, 3), np.uint8)] * 3
    top5 = [[(f"class{j}", 0.2) for j in range(5)]] * 3
    # the third image's label is named like the top guess but is another class (ImageNet's two "crane"s)
    fig, layout = drawing.draw_predictions(images, top5, ["class2", "absent", "class0"], true_ranks=[2, None, None])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["true class", "other labels"]
    marks = [[t.get_text() for t in ax.texts] for ax in fig.axes if ax.patches]
    assert marks == [[], ["true class not in top 5"], ["true class not in top 5"]]
    assert layout.notes["true_class_missing"] == [1, 2]
    from matplotlib.colors import to_rgba

    colours = [[p.get_facecolor() == to_rgba("tab:red") for p in ax.patches] for ax in fig.axes if ax.patches]
    assert colours[0] == [False, False, True, False, False]  # bars bottom-up: rank 2 is the third
    assert not any(colours[1]) and not any(colours[2])


def test_neighbours_figure_has_a_query_and_six_neighbours_per_row():
    img = np.zeros((10, 10, 3), np.uint8)
    fig, layout = drawing.draw_neighbours([img] * 3, [[img] * 6] * 3, ["a", "b", "c"],
                                          [[f"{q}{n}" for n in range(6)] for q in "abc"])
    assert layout.panels == 3 and layout.items_per_panel == [6, 6, 6]
    assert sum(1 for ax in fig.axes if ax.images) == 3 * 7
    assert [ax.get_title() for ax in fig.axes[7:14]] == ["b", "b0", "b1", "b2", "b3", "b4", "b5"]  # each its class


def search_with(request):
    """``faiss_from`` for the search named by the test's parameter: torch always, or FAISS (if installed)."""
    if request == "faiss":
        pytest.importorskip("faiss")
        return 0
    return math.inf


@pytest.mark.parametrize("search", ["torch", "faiss"])
@pytest.mark.parametrize("chunk", [7, 1000])
def test_nearest_neighbours_equal_a_brute_force_loop(chunk, search):
    rng = np.random.default_rng(4)
    base, queries = rng.normal(size=(50, 16)).astype(np.float32), rng.normal(size=(4, 16)).astype(np.float32)
    distances, indices = nearest(base, queries, k=6, chunk=chunk, faiss_from=search_with(search))
    brute = np.array([[np.sqrt(((q.astype(np.float64) - b) ** 2).sum()) for b in base] for q in queries])
    assert np.array_equal(indices, np.argsort(brute, axis=1)[:, :6])
    assert np.allclose(distances, np.sort(brute, axis=1)[:, :6], atol=1e-4)


def test_nearest_neighbours_of_a_memory_mapped_base_need_no_faiss(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    monkeypatch.setattr(neighbours, "FAISS_FROM", 0)  # FAISS would be asked for, were it there
    rng = np.random.default_rng(5)
    np.save(tmp_path / "base.npy", rng.normal(size=(40, 8)).astype(np.float32))
    base = np.load(tmp_path / "base.npy", mmap_mode="r")
    _, indices = nearest(base, base[[3, 30]], k=2, chunk=16)
    assert list(indices[:, 0]) == [3, 30]


def write_metrics(run_dir, lrs):
    rows = [{"epoch": e, "train_top1_error": 90 - 5 * e, "train_top5_error": 70 - 5 * e,
             "val_top1_error": 92 - 4 * e, "val_top5_error": 75 - 4 * e, "lr": lr}
            for e, lr in enumerate(lrs, start=1)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_curves_mark_the_epochs_where_the_learning_rate_was_divided(tmp_path):
    rows = write_metrics(tmp_path, [0.01, 0.01, 0.001, 0.001, 0.0001])
    assert read_metrics(tmp_path) == rows
    fig, layout = drawing.draw_curves(rows)
    assert layout.notes["lr_reductions"] == [3, 5]
    assert layout.items_per_panel == [2, 2]  # train and val in each of top-1 and top-5
    vertical = [line for line in fig.axes[0].lines if len(set(line.get_xdata())) == 1]
    assert sorted(line.get_xdata()[0] for line in vertical) == [3, 5]


def test_curves_mark_no_division_along_a_cosine_schedule():
    from alexnet.train.optim import CosineWarmup

    for epochs in (2, 5, 10, 90):  # 5: the quick preset's; each row holds the rate at its epoch's end
        rows = [{"epoch": e, "lr": CosineWarmup(0.0025, 0.0, epochs).lr(e, 0.0)} for e in range(1, epochs + 1)]
        assert drawing.lr_reductions(rows) == []
    rows = [{"epoch": e, "lr": lr} for e, lr in enumerate([0.01, 0.009, 0.001, 0.001, 0.0001], start=1)]
    assert drawing.lr_reductions(rows) == [3, 5]


def test_curves_have_whole_epochs_the_chance_level_and_the_full_error_range():
    rows = [{"epoch": e, "train_top1_error": 90.1 - 0.1 * e, "train_top5_error": 50.2, "val_top1_error": 90.0 + 0.05 * e,
             "val_top5_error": 49.9, "lr": 0.01} for e in (1, 2, 3)]  # 10 classes, nothing learned: noise
    fig, _ = drawing.draw_curves(rows, classes=10)
    for one in drawing.draw_curves(rows[:1], classes=10)[0].axes:  # a one-epoch run: the tick 1 alone
        assert [t for t in one.get_xticks() if one.get_xlim()[0] <= t <= one.get_xlim()[1]] == [1]
    for ax, chance in zip(fig.axes, (90.0, 50.0)):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        level = [line for line in ax.lines if line.get_label().startswith("chance")]
        assert [list(line.get_ydata()) for line in level] == [[chance, chance]]
        assert ax.get_ylim() == (0.0, 100.0)  # the noise stays a flat line, not an oscillation


def test_metrics_of_a_resumed_run_keep_the_last_row_per_epoch_and_skip_a_torn_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "lr": 0.1}\n{"epoch": 1, "lr": 0.01}\n{"epo')
    assert read_metrics(tmp_path) == [{"epoch": 1, "lr": 0.01}]


def test_saved_kernels_png_is_a_real_image(tmp_path):
    from alexnet.atomic import save_figure

    fig, _ = drawing.draw_kernels(np.ones((96, 3, 11, 11)), towers=2)
    path = save_figure(fig, tmp_path / "kernels.png")
    with Image.open(path) as image:
        width, height = image.size
    assert width > height > 0
    assert [p.name for p in tmp_path.iterdir()] == ["kernels.png"]  # no temporary file left


# --- the command on a tiny paper-shaped network ---------------------------------------------------

TOWERED = dict(channels=(96, 16, 16, 16, 16), fc_width=32)  # the paper's 96 conv1 kernels in two towers


def test_conv1_kernels_are_96_in_two_towers_read_from_conv2_groups():
    kernels, towers = figures.conv1_kernels(tiny_alexnet(**TOWERED))
    assert kernels.shape == (96, 3, 11, 11) and towers == 2
    one_tower = alexnet.build_model("alexnet", num_classes=3, input_size=67, towers=1,
                                    channels=(48, 16, 16, 16, 16), fc_width=32)
    assert figures.conv1_kernels(one_tower)[1] == 1


def test_fc7_features_of_the_centre_patch_match_the_model_on_the_normalised_crop(tmp_path):
    model, data = tiny_alexnet(**TOWERED), StandInDataset(10, size=72, num_classes=3, seed=1)
    features = extract_features(model, data, [4, 7, 2], batch_size=2, out=tmp_path / "f.npy")
    image = torch.from_numpy(data.images[7].transpose(2, 0, 1)).float()
    crop = (image - torch.from_numpy(data.mean).permute(2, 0, 1))[:, 2:69, 2:69]
    with torch.no_grad():
        expected = model.eval().fc7_features(crop[None])[0].numpy()
    assert features.shape == (3, 32)
    assert np.allclose(features[1], expected, atol=1e-5)
    assert np.array_equal(np.load(tmp_path / "f.npy"), features)


def test_figure4_pictures_from_a_model_and_data(tmp_path):
    model = tiny_alexnet(**TOWERED)
    train = StandInDataset(30, size=72, num_classes=3, seed=2)
    val = StandInDataset(8, size=72, num_classes=3, seed=3)
    layout = figures.figure_predictions(model, val, [0, 1, 2], val.classes, "cpu", tmp_path)
    assert layout.items_per_panel == [3, 3, 3]  # three classes: all of them are the "top five"
    args = SimpleNamespace(device="cpu", batch_size=8, workers=0)
    layout = figures.figure_neighbours(model, train, val, [5, 6], np.arange(0, 30, 2), 6, args, tmp_path)
    assert layout.panels == 2 and layout.items_per_panel == [6, 6]
    assert {p.name for p in tmp_path.iterdir()} == {"predictions.png", "neighbours.png", "fc7-train.npy"}
    assert np.load(tmp_path / "fc7-train.npy").shape == (15, 32)


def figures_command(capsys, *args):
    return alexnet_command(capsys, "figures", *args)


def test_figures_command_draws_kernels_colour_numbers_and_curves_from_a_run_folder(tmp_path, capsys):
    run = save_run(tmp_path / "run", tiny_alexnet(**TOWERED))
    write_metrics(run, [0.01, 0.001])
    proc = figures_command(capsys, run)
    assert proc.returncode == 0, proc.stderr
    out = run / "figures"
    assert {p.name for p in out.iterdir()} == {"kernels.png", "colour.json", "curves.png"}
    assert f"written: {out / 'kernels.png'}, {out / 'colour.json'}, {out / 'curves.png'}" in proc.stdout
    colour = json.loads((out / "colour.json").read_text())
    assert [t["kernels"] for t in colour["towers"]] == [[0, 47], [48, 95]]
    assert "tower 2 (kernels 48-95): colour specificity" in proc.stdout
    assert colour["random_kernel"]["mean"] == pytest.approx(2 / 3)
    assert "a random Gaussian kernel scores 0.667" in proc.stdout and colour["comparison"]["line"] in proc.stdout


def test_figures_command_with_a_prepared_dataset_draws_figure4(tmp_path, capsys):
    data = make_prepared(tmp_path / "data", per_class=(6, 2), size=72)
    checkpoint = save_run(tmp_path / "run", tiny_alexnet(**TOWERED)) / "checkpoints" / "best.pt"
    proc = figures_command(capsys, checkpoint, "--data", data, "--out", tmp_path / "out", "--images", 3, "--queries", 2,
                           "--workers", 0, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {"kernels.png", "colour.json", "predictions.png", "neighbours.png", "fc7-train.npy"}
    assert all(str(tmp_path / "out" / name) in proc.stdout for name in names)  # each file it wrote, by name
    assert np.load(tmp_path / "out" / "fc7-train.npy").shape == (18, 32)  # every training image searched
    with Image.open(tmp_path / "out" / "neighbours.png") as image:
        width, height = image.size
    assert width > 2 * height  # two rows of a query and six neighbours: wide


def test_figures_command_names_a_missing_run_folder(tmp_path, capsys):
    proc = figures_command(capsys, tmp_path / "nope")
    assert proc.returncode == 2 and "nope: no such run folder or checkpoint" in proc.stderr


def test_figures_command_draws_the_neighbours_without_faiss(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # pip install -e . brings no FAISS
    monkeypatch.setattr(neighbours, "FAISS_FROM", 0)
    data = make_prepared(tmp_path / "data", per_class=(6, 2), size=72)
    run = save_run(tmp_path / "run", tiny_alexnet(**TOWERED))
    proc = figures_command(capsys, run, "--data", data, "--out", tmp_path / "out", "--images", 2, "--queries", 2,
                           "--workers", 1, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "neighbours.png").is_file()


def test_figures_command_refuses_a_model_of_other_classes_than_the_data(tmp_path, capsys):
    data = make_prepared(tmp_path / "data", per_class=(6, 2), size=72)  # three classes
    run = save_ten_class_run(tmp_path / "run")
    proc = figures_command(capsys, run, "--data", data, "--out", tmp_path / "out", "--workers", 0, "--device", "cpu")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "best.pt: the model knows 10 classes but the data has 3" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing drawn under the data's names
