"""`alexnet report`: one self-contained HTML page with each run beside the paper's numbers."""

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

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


def lrn_result(verdict="normalisation lowered test error by 1 point", test_set="CIFAR-10's test_batch"):
    spread = lambda values: {"mean": sum(values) / len(values), "std": 0.5, "values": values}
    return {"variants": {"without": {"ten_view": spread([30.0, 31.0, 32.0])},
                         "with": {"ten_view": spread([29.0, 30.0, 31.0])}},
            "paper": {"test_error": {"without": 13.0, "with": 11.0}}, "verdict": verdict, "test_set": test_set,
            "train_images": 50000, "epochs": 10, "anneal": [1, 1]}


def sweep_result(text=None):
    return {"images": 500, "epochs": 3, "seed": 0, "rows": [
        {"inputs": text or "raw", "init": text or "authors", "tanh_lr_choice": text or "own best", "relu_lr": 0.003,
         "tanh_lr": 0.01, "relu_epochs_to_25": text or "1.50", "tanh_epochs_to_25": text or "> 3", "ratio": 2.0,
         "lower_bound": True}]}


def colour_result(line="tower 2 more colour-specific"):
    return {"towers": [{"tower": 1, "kernels": [0, 47], "mean_specificity": 0.12, "median_specificity": 0.1},
                       {"tower": 2, "kernels": [48, 95], "mean_specificity": 0.61, "median_specificity": 0.6}],
            "random_kernel": {"mean": 2 / 3, "sd": 0.035}, "comparison": {"line": line}}


def retrieval_result():
    return {"queries": 10, "base_images": 100, "k": 5, "feature_dim": 4096, "chance_precision": 0.1,
            "euclidean_fc7": {"precision_at_k": 0.5, "bytes_per_image": 16384, "queries_per_s": 100.0},
            "binary_codes": {"bits": 256, "precision_at_k": 0.45, "bytes_per_image": 32, "queries_per_s": 5000.0}}


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
    write_json(folder / "lrn.json", lrn_result())
    write_json(folder / "sweep.json", sweep_result())
    html = report.render([report.collect(folder)], "t")
    assert "<td>without response normalisation</td><td>31.00% ± 0.50</td><td>30.00, 31.00, 32.00</td><td>13%</td>" in html
    assert "<td>with response normalisation</td><td>30.00% ± 0.50</td>" in html and "<td>11%</td>" in html
    assert "normalisation lowered test error by 1 point" in html and "CIFAR-10&#x27;s test_batch" in html
    assert "10 epochs per run, the last 2 annealed (1 at lr/10, then 1 at lr/100)" in html
    write_json(folder / "lrn.json", {**lrn_result(), "epochs": 1, "anneal": [0, 0]})
    assert "1 epoch per run" in report.render([report.collect(folder)], "t")  # not "1 epochs"
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
    write_json(run / "retrieval" / "retrieval.json", retrieval_result())
    write_json(run / "checkpoints" / "eval.json", {"top1_error": 1.0, "top5_error": 1.0})
    found = report.collect(run)
    assert found["experiments"] == {"retrieval": retrieval_result()}
    assert [e["file"] for e in found["evaluations"]] == ["eval-ten.json"]


def test_colour_ablation_and_retrieval_tables_are_rendered(tmp_path):
    from alexnet.analysis.ablations import table

    folder = tmp_path / "study"
    for name, top1 in (("paper", 40.0), ("one-tower", 42.5)):
        make_run(folder / name, top1=(top1,), lrs=(0.01,))
    write_json(folder / "ablations.json", table(["paper", "one-tower"], folder))
    write_json(folder / "colour.json", colour_result())
    write_json(folder / "retrieval.json", retrieval_result())
    html = report.render([report.collect(folder)], "t")
    assert "<td>one-tower</td><td>42.5%</td><td>27.5%</td><td>+2.5</td><td>+2.5</td><td>+1.7 / +1.2</td>" in html
    assert "<td>tower 2 (kernels 48-95)</td><td>0.610</td>" in html
    assert "<td>a random Gaussian kernel (the level of noise)</td><td>0.667</td>" in html
    assert "<p>tower 2 more colour-specific</p>" in html
    assert "<td>256-bit codes, Hamming</td><td>0.450</td><td>32 B</td><td>5,000</td>" in html


# --- what comes from a file never becomes markup; a malformed file is one line ----------------------

# Script that runs when the page opens if it reaches the page as markup: in a text node, in an
# attribute value, or in a name (no "/": it is also a folder and a file name).
PAYLOAD = "<img src=x onerror=\"document.title='PWNED'\">'\"><b>x"


def hostile_folder(root: Path, text: str) -> Path:
    """A folder with every file the report reads, ``text`` in every field that holds text: its name,
    a picture's name, config.yaml, and each experiment's strings."""
    from alexnet.analysis.ablations import table

    folder = make_run(root / text)
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": text, "arch": text, "epochs": 3, text: [text]}))
    write_json(folder / "eval-centre.json", {"top1_error": 50.0, "top5_error": 30.0, "images": 10, "crops": text})
    shutil.copy(folder / "figures" / "kernels.png", folder / f"{text}.png")
    result = relu_vs_tanh_result()
    result["protocol"] = {text: text, "inputs": text}
    write_json(folder / "relu-vs-tanh.json", result)
    write_json(folder / "sweep.json", sweep_result(text))
    write_json(folder / "lrn.json", lrn_result(verdict=text, test_set=text))
    write_json(folder / "colour.json", colour_result(text) | {"measure": text, "paper": text})
    ablations = table(["paper", "no-lrn"], folder)
    ablations["rows"][0] |= {"variant": text, "paper": text}
    ablations["rows"][1]["skipped"] = text
    write_json(folder / "ablations.json", ablations)
    write_json(folder / "retrieval.json", retrieval_result())
    return folder


class Markup(HTMLParser):
    """The elements and attribute names of a page, in order, and its text."""

    def __init__(self, page: str):
        super().__init__()
        self.elements, self.text = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, tuple(name for name, _ in attrs)))
        self.text += [value for name, value in attrs if name != "src"]  # what attributes say is text too

    def handle_data(self, data):
        self.text.append(data)


def break_file(folder: Path, name: str, change) -> None:
    path = folder / name
    data = json.loads(path.read_text())
    change(data)
    write_json(path, data)


def report_page(capsys, folder: Path, out: Path) -> str:
    ran = alexnet_command(capsys, "report", folder, "--out", out, "--title", "the report")
    assert ran.returncode == 0, ran.stderr
    return out.read_text()


# The numbers the report once inserted unescaped (issue 23): each now refused, the page unwritten.
HOSTILE_NUMBERS = [("relu-vs-tanh.json", "images"), ("lrn.json", "train_images"), ("retrieval.json", "queries")]


def hostile_number_pages(capsys, root: Path) -> list[Path]:
    """For each of HOSTILE_NUMBERS, a folder whose field holds the payload: the report must refuse
    it naming the file and the field; the pages it wrote anyway (none), to be checked as pages."""
    pages = []
    for name, field in HOSTILE_NUMBERS:
        folder = hostile_folder(root / field, "plain")
        break_file(folder, name, lambda data: data.update({field: PAYLOAD}))
        ran = alexnet_command(capsys, "report", folder, "--out", root / f"{field}.html", "--title", "the report")
        if ran.returncode == 0:
            pages.append(root / f"{field}.html")
        else:
            assert f"{name}: {field} is text, not a whole number" in ran.stderr
    return pages


def test_text_from_files_is_escaped_so_that_no_element_or_attribute_comes_from_a_file(tmp_path, capsys):
    hostile = Markup(report_page(capsys, hostile_folder(tmp_path / "a", PAYLOAD), tmp_path / "a.html"))
    plain = Markup(report_page(capsys, hostile_folder(tmp_path / "b", "plain"), tmp_path / "b.html"))
    assert hostile.elements == plain.elements  # the payload added no element and no attribute
    assert {tag for tag, _ in hostile.elements} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2",
                                                    "h3", "p", "table", "tr", "th", "td", "figure", "img",
                                                    "figcaption", "details", "summary", "pre"}
    shown = "".join(hostile.text)
    # every field is on the page as the text it is: the folder's name (its heading, path and Table 2
    # row), config.yaml's three, the picture's name, and the experiments' text fields
    assert shown.count(PAYLOAD) == "".join(plain.text).count("plain") >= 20
    for page in hostile_number_pages(capsys, tmp_path / "numbers"):
        assert Markup(page.read_text()).elements == plain.elements, page.name


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def rendered_title(page: Path, browser: str, profile: Path) -> str | None:
    """The page's title after a headless browser loaded it and ran what script it would run."""
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    return title[1] if title else None


@pytest.mark.skipif(_chromium() is None, reason="no chromium on this machine")
def test_a_browser_opening_the_report_runs_no_script_from_the_files(tmp_path, capsys):
    browser, profile = _chromium(), tmp_path / "profile"
    unescaped = tmp_path / "control.html"  # the control: the payload as markup, as the numbers were
    unescaped.write_text(f"<!DOCTYPE html><html><head><title>control</title></head><body><p>{PAYLOAD}</p></body>"
                         "</html>")
    control = rendered_title(unescaped, browser, profile)
    if control is None:
        pytest.skip(f"{browser} opens no page on this machine")
    assert control == "PWNED"  # the browser runs it
    page = tmp_path / "report.html"
    report_page(capsys, hostile_folder(tmp_path, PAYLOAD), page)
    for opened in [page] + hostile_number_pages(capsys, tmp_path / "numbers"):
        assert rendered_title(opened, browser, profile) == "the report", opened.name


@pytest.mark.parametrize(("name", "change", "message"), [
    ("relu-vs-tanh.json", lambda d: d.update(images=PAYLOAD), "relu-vs-tanh.json: images is text, not a whole number"),
    ("lrn.json", lambda d: d.update(train_images=PAYLOAD), "lrn.json: train_images is text, not a whole number"),
    ("retrieval.json", lambda d: d.update(queries=PAYLOAD), "retrieval.json: queries is text, not a whole number"),
    ("relu-vs-tanh.json", lambda d: d.update(images=True), "images is true or false, not a whole number"),
    ("relu-vs-tanh.json", lambda d: d["runs"].pop("tanh"), "relu-vs-tanh.json: no field runs.tanh"),
    ("relu-vs-tanh.json", lambda d: d["runs"]["relu"][1]["crossing_25"].update(epoch="2.0"),
     "relu-vs-tanh.json: runs.relu[1].crossing_25.epoch is text, not a number;"),
    ("lrn.json", lambda d: d.update(anneal=[1]), "lrn.json: anneal is a list, not a list of 2"),
    ("lrn.json", lambda d: d["variants"]["with"]["ten_view"].update(values=None),
     "lrn.json: variants.with.ten_view.values is null, not a list"),
    ("colour.json", lambda d: d.update(towers={}), "colour.json: towers is an object, not a list"),
    ("sweep.json", lambda d: d["rows"][0].pop("ratio"), "sweep.json: no field rows[0].ratio"),
    ("ablations.json", lambda d: d["rows"][0].update(top1_error="40%"),
     "ablations.json: rows[0].top1_error is text, not a number or null"),
    ("eval-ten.json", lambda d: d.update(top5_error=[30.5]), "eval-ten.json: top5_error is a list, not a number"),
    ("eval-ten.json", lambda d: d.update(per_class_accuracy=3), "per_class_accuracy is a whole number, not an object"),
])
def test_a_malformed_result_is_one_line_naming_the_file_and_the_field(tmp_path, capsys, name, change, message):
    folder = hostile_folder(tmp_path, "plain")
    break_file(folder, name, change)
    ran = alexnet_command(capsys, "report", folder, "--out", tmp_path / "report.html")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr
    assert message in ran.stderr, ran.stderr
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(("name", "text", "message"), [
    ("metrics.jsonl", '{"epoch": 1, "val_top1_error": 50.0}\n{"epoch": 2, "val_top1_error": "40%"}\n',
     "metrics.jsonl, epoch 2: val_top1_error is text, not a number or null"),
    ("metrics.jsonl", '{"epoch": 1, "lr": 0.01}\n{"lr": 0.001}\n{"epoch": 3}\n',
     'metrics.jsonl, line 2: no whole-number "epoch"'),
    ("metrics.jsonl", '{"epoch": "1"}\n', 'metrics.jsonl, line 1: no whole-number "epoch"'),
    ("metrics.jsonl", '[1, 2]\n{"epoch": 2}\n', 'metrics.jsonl, line 1: no whole-number "epoch"'),
    ("config.yaml", "- data\n- arch\n", "config.yaml: the file is a list, not an object"),
    ("lrn.json", "\xff\xfe not text", "lrn.json: not readable JSON"),
    ("retrieval.json", "[" * 100_000, "retrieval.json: not readable JSON"),
])
def test_a_malformed_metrics_config_or_json_file_is_one_line_naming_it(tmp_path, capsys, name, text, message):
    folder = hostile_folder(tmp_path, "plain")
    (folder / name).write_bytes(text.encode("latin-1"))
    ran = alexnet_command(capsys, "report", folder, "--out", tmp_path / "report.html")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr
    assert message in ran.stderr, ran.stderr


def test_a_json_file_over_the_bound_is_refused_unread(tmp_path, capsys):
    folder = make_run(tmp_path / "run")
    with open(folder / "lrn.json", "wb") as f:
        f.truncate(report.MAX_JSON_BYTES + 1)  # sparse: no disk used
    ran = alexnet_command(capsys, "report", folder, "--out", tmp_path / "report.html")
    assert ran.returncode == 2 and "lrn.json: larger than 67,108,864 bytes" in ran.stderr
