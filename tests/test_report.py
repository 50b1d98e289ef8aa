"""`alexnet report`: one self-contained HTML page with each run beside the paper's numbers."""

import base64
import json
import re
from pathlib import Path

from alexnet.analysis import report
from alexnet.analysis.drawing import draw_curves, pyplot
from alexnet.atomic import save_figure, write_json
from tests.kit import alexnet_command, save_ten_class_run



def make_run(folder: Path, top1=(80.0, 60.0, 50.0), lrs=(0.01, 0.01, 0.001)) -> Path:
    folder.mkdir(parents=True)
    rows = [{"epoch": e, "train_top1_error": t - 5, "train_top5_error": t - 20, "val_top1_error": t,
             "val_top5_error": t - 15, "lr": lr} for e, (t, lr) in enumerate(zip(top1, lrs), start=1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "config.yaml").write_text("data: imagenette\narch: alexnet\nepochs: 3\nlr: 0.01\n")
    write_json(folder / "eval-ten.json", {"top1_error": 47.5, "top5_error": 30.5, "images": 100, "crops": "ten"})
    fig, _ = draw_curves(rows)
    save_figure(fig, folder / "figures" / "kernels.png")  # any picture: it must be embedded as is
    return folder


def relu_vs_tanh_result():
    def run(lr, seed, crossing):
        return {"lr": lr, "seed": seed, "epochs": 4, "points": [], "crossing_25": crossing}
    return {"images": 1000, "epochs": 4, "threshold": 25.0,
            "protocol": {"inputs": "raw", "init": "authors", "bias_lr": 2.0},
            "runs": {"relu": [run(0.03, 0, {"epoch": 1.5, "seconds": 30.0}), run(0.03, 1, {"epoch": 2.0, "seconds": 41.0})],
                     "tanh": [run(0.01, 0, None), run(0.01, 1, None)]},
            "speedup": {"epochs": 3.33, "min": 2.0, "max": 2.67, "seconds": 2.0, "lower_bound": True,
                        "per_seed": [{}, {}]}}


def test_report_is_self_contained_with_every_picture_inlined(tmp_path):
    run = make_run(tmp_path / "run1")
    html = report.render([report.collect(run)], "t")
    assert not re.search(r"https?://", html)
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in html and "<script" not in html and "url(" not in html
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in sources]
    assert (run / "figures" / "kernels.png").read_bytes() in embedded  # the file, byte for byte
    assert len(sources) == 2  # kernels.png and the curves drawn from metrics.jsonl


def test_table2_lists_the_paper_rows_then_each_run_with_its_ten_crop_errors(tmp_path):
    runs = [report.collect(make_run(tmp_path / "a")), report.collect(make_run(tmp_path / "b"))]
    (tmp_path / "b" / "eval-ten.json").unlink()
    runs[1] = report.collect(tmp_path / "b")
    table = report.table2(runs)
    cells = re.findall(r"<tr[^>]*>(.*?)</tr>", table)
    names = [re.findall(r"<td>(.*?)</td>", c)[0] for c in cells[1:]]
    assert names == [row[0] for row in report.PAPER_TABLE2] + ["a (ten crops)", "b (best epoch, centre crop)"]
    assert "<td>47.5%</td><td>30.5%</td>" in cells[-2]
    assert "<td>50.0%</td><td>35.0%</td>" in cells[-1]  # best validation epoch: the third
    assert "<td>40.7%</td><td>18.2%</td>" in cells[2]  # the paper's 1 CNN


def test_final_errors_take_the_last_and_the_best_epoch(tmp_path):
    run = report.collect(make_run(tmp_path / "r", top1=(70.0, 55.0, 60.0)))
    errors = report.final_errors(run)
    assert errors["last"] == (3, 60.0, 45.0) and errors["best"] == (2, 55.0, 40.0)
    assert errors["ten"] == (100, 47.5, 30.5)


def test_experiment_results_are_shown_beside_the_paper(tmp_path):
    folder = tmp_path / "exp"
    write_json(folder / "relu-vs-tanh.json", relu_vs_tanh_result())
    html = report.render([report.collect(folder)], "t")
    assert "&gt;= 3.3x sooner in epochs (seeds 2.0-2.7x)" in html and "paper: about 6x" in html
    assert "<td>tanh</td><td>1</td><td>0.01</td><td>&gt; 4</td>" in html
    assert "<td>relu</td><td>1</td><td>0.03</td><td>2.00</td><td>41</td>" in html
    assert "inputs raw, init authors, bias_lr 2.0" in html


def test_the_lrn_comparison_and_the_sweep_are_shown_beside_the_paper(tmp_path):
    folder = tmp_path / "exp"
    spread = lambda values: {"mean": sum(values) / len(values), "std": 0.5, "values": values}
    write_json(folder / "lrn.json", {
        "variants": {"without": {"ten_view": spread([30.0, 31.0, 32.0])}, "with": {"ten_view": spread([29.0, 30.0, 31.0])}},
        "paper": {"test_error": {"without": 13.0, "with": 11.0}}, "verdict": "normalisation lowered test error by 1 point",
        "test_set": "CIFAR-10's test_batch", "train_images": 50000, "epochs": 10, "anneal": [1, 1]})
    write_json(folder / "sweep.json", {"images": 500, "epochs": 3, "seed": 0, "rows": [
        {"inputs": "raw", "init": "authors", "tanh_lr_choice": "own best", "relu_lr": 0.003, "tanh_lr": 0.01,
         "relu_epochs_to_25": "1.50", "tanh_epochs_to_25": "> 3", "ratio": 2.0, "lower_bound": True}]})
    html = report.render([report.collect(folder)], "t")
    assert "<td>without response normalisation</td><td>31.00% ± 0.50</td><td>30.00, 31.00, 32.00</td><td>13%</td>" in html
    assert "<td>with response normalisation</td><td>30.00% ± 0.50</td>" in html and "<td>11%</td>" in html
    assert "normalisation lowered test error by 1 point" in html and "CIFAR-10&#x27;s test_batch" in html
    assert "10 epochs per run, the last 2 annealed (1 at lr/10, then 1 at lr/100)" in html
    assert "<td>raw</td><td>authors</td><td>own best</td><td>0.003</td><td>0.01</td><td>1.50</td><td>&gt; 3</td>" \
           "<td>&gt;= 2.0x</td>" in html


def test_report_command_writes_the_page_and_names_a_missing_folder(tmp_path, capsys):
    run = make_run(tmp_path / "run1")
    out = tmp_path / "report.html"
    proc = alexnet_command(capsys, "report", run, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("<!DOCTYPE html>") and "run1" in out.read_text()
    proc = alexnet_command(capsys, "report", tmp_path / "gone", "--out", out)
    assert proc.returncode == 2 and "gone: no such folder" in proc.stderr


def test_each_runs_errors_stand_beside_the_chance_level_of_its_classes(tmp_path, capsys):
    run = save_ten_class_run(make_run(tmp_path / "run"))
    out = tmp_path / "report.html"
    proc = alexnet_command(capsys, "report", run, "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", out.read_text())
    run_rows = [r for r in rows if r.startswith(("<td>run (", "<td>last epoch", "<td>best epoch", "<td>evaluation"))]
    assert len(run_rows) == 4  # Table 2's row, then last epoch, best epoch and ten crops
    assert all(r.endswith("<td>90.0% / 50.0% (10 classes)</td>") for r in run_rows)
    assert "<td>40.7%</td><td>18.2%</td><td>–</td><td>99.9% / 99.5% (1000 classes)</td>" in rows[2]


def test_report_command_refuses_an_evaluation_of_other_classes_than_the_runs_network(tmp_path, capsys):
    run = save_ten_class_run(make_run(tmp_path / "run"))
    write_json(run / "eval-ten.json", {"top1_error": 47.5, "top5_error": 30.5, "images": 6, "crops": "ten",
                                       "per_class_accuracy": {"bright": 50.0, "dark": 50.0, "red": 60.0}})
    proc = alexnet_command(capsys, "report", run, "--out", tmp_path / "report.html")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "eval-ten.json: evaluated on data of 3 classes, but the run's network" in proc.stderr
    assert "best.pt) knows 10 classes" in proc.stderr
    assert not (tmp_path / "report.html").exists()


def test_pictures_drawn_for_the_page_are_closed(tmp_path):
    run = report.collect(make_run(tmp_path / "r"))
    before = len(pyplot().get_fignums())
    assert "Training curves" in report.render([run], "t")  # drawn from metrics.jsonl
    assert len(pyplot().get_fignums()) == before


def test_results_in_direct_subfolders_are_found_but_not_checkpoints(tmp_path):
    run = make_run(tmp_path / "run")
    write_json(run / "retrieval" / "retrieval.json", {"k": 10})
    write_json(run / "checkpoints" / "eval.json", {"top1_error": 1.0, "top5_error": 1.0})
    found = report.collect(run)
    assert found["experiments"] == {"retrieval": {"k": 10}}
    assert [e["file"] for e in found["evaluations"]] == ["eval-ten.json"]


def test_colour_ablation_and_retrieval_tables_are_rendered(tmp_path):
    from alexnet.analysis.ablations import table

    folder = tmp_path / "study"
    for name, top1 in (("paper", 40.0), ("one-tower", 42.5)):
        make_run(folder / name, top1=(top1,), lrs=(0.01,))
    write_json(folder / "ablations.json", table(["paper", "one-tower"], folder))
    write_json(folder / "colour.json", {"towers": [
        {"tower": 1, "kernels": [0, 47], "mean_specificity": 0.12, "median_specificity": 0.1},
        {"tower": 2, "kernels": [48, 95], "mean_specificity": 0.61, "median_specificity": 0.6}],
        "random_kernel": {"mean": 2 / 3, "sd": 0.035}, "comparison": {"line": "tower 2 more colour-specific"}})
    write_json(folder / "retrieval.json", {
        "queries": 10, "base_images": 100, "k": 5, "feature_dim": 4096, "chance_precision": 0.1,
        "euclidean_fc7": {"precision_at_k": 0.5, "bytes_per_image": 16384, "queries_per_s": 100.0},
        "binary_codes": {"bits": 256, "precision_at_k": 0.45, "bytes_per_image": 32, "queries_per_s": 5000.0}})
    html = report.render([report.collect(folder)], "t")
    assert "<td>one-tower</td><td>42.5%</td><td>27.5%</td><td>+2.5</td><td>+2.5</td><td>+1.7 / +1.2</td>" in html
    assert "<td>tower 2 (kernels 48-95)</td><td>0.610</td>" in html
    assert "<td>a random Gaussian kernel (the level of noise)</td><td>0.667</td>" in html
    assert "<p>tower 2 more colour-specific</p>" in html
    assert "<td>256-bit codes, Hamming</td><td>0.450</td><td>32 B</td><td>5,000</td>" in html
