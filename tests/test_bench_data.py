import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet.data.prepare import prepare
from tests.kit import HANG_GUARD_S, WNIDS, image_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    source = image_folder(base / "source", val_per_class=3, classes=WNIDS[:2], size=(300, 260), noise=255)
    return prepare(source, base / "out", workers=1, progress=False), source


def bench(*options, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "alexnet", "bench", "data", *options],
                          capture_output=True, text=True, cwd=cwd, timeout=HANG_GUARD_S)


def test_bench_data_prints_both_pipelines_and_their_ratio_as_json(tiny_prepared):
    out, source = tiny_prepared
    done = bench("--data", str(out), "--workers", "1", "--images", "20", "--baseline-images",
                 "12", "--batch-size", "4", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    ours, usual = result["pipeline"], result["usual_way"]
    assert (ours["images"], usual["images"]) == (20, 12)
    assert (ours["crop_size"], usual["crop_size"]) == (227, 224)
    assert result["source"] == str(source / "train") and result["source_images"] == 6
    for run in (ours, usual):
        assert run["images_per_s"] > 0 and run["worker_cpu_s"] > 0
    assert result["ratio"]["images_per_s"] == pytest.approx(
        ours["images_per_s"] / usual["images_per_s"], abs=0.01)


def test_bench_data_without_a_source_says_how_to_give_one(tiny_prepared, tmp_path):
    out, _ = tiny_prepared
    done = bench("--data", str(out), "--source", str(tmp_path / "missing"), "--workers", "1")
    assert done.returncode == 2
    assert "--source DIR" in done.stderr and "missing" in done.stderr


def test_bench_data_reads_every_image_format_pillow_reads_from_its_source(tiny_prepared, tmp_path):
    """The source images are picked by name (alexnet.data.images.IMAGE_SUFFIXES): BMP and TIFF as
    well as JPEG, in any case; a folder with none of them is refused, naming the suffixes."""
    from PIL import Image

    out, _ = tiny_prepared
    pixels = np.random.default_rng(0).integers(0, 256, (260, 300, 3), dtype=np.uint8)
    for name in ("a/one.BMP", "a/two.tiff", "b/three.jpg"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "src" / name)
    (tmp_path / "src" / "a" / "notes.txt").write_text("not an image")
    done = bench("--data", str(out), "--source", str(tmp_path / "src"), "--workers", "1", "--images", "4",
                 "--baseline-images", "3", "--batch-size", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source_images"] == 3
    (tmp_path / "empty").mkdir()
    done = bench("--data", str(out), "--source", str(tmp_path / "empty"), "--workers", "1")
    assert done.returncode == 2 and ".tiff" in done.stderr and ".webp" in done.stderr


def test_bench_data_sizes_each_pipeline_by_seconds_after_a_calibration_and_writes_rows(tiny_prepared, tmp_path):
    out, _ = tiny_prepared
    rows = tmp_path / "rows.jsonl"
    done = bench("--data", str(out), "--workers", "1", "--batch-size", "2", "--seconds", "0.01",
                 "--rows", str(rows), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [r["way"] for r in written] == ["pipeline", "usual_way"]
    for row, key in zip(written, ("pipeline", "usual_way")):
        assert row["kind"] == "data" and row["workers"] == 1
        assert row["images"] == result[key]["images"] >= 4 * 1 * 2  # at least the calibration's 4 batches
