"""benchmarks/gpu.sh, dry-run on the CPU as a lent GPU machine would run it: one time budget,
rows written as they come, a stage stopped at its time limit, a wheel that does not install; and
benchmarks/gpu_table.py and the kernel table on rows and events the tests write."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.kit import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_table  # noqa: E402

TINY_NET = "--model-option input_size=67 --model-option fc_width=16 --model-option channels=[8,16,16,16,16]"
# Stands in for the interpreter: `bench model` writes its first row, then hangs until stopped.
HANG_AFTER_FIRST_ROW = """
import sys, time
from alexnet.bench import common
add = common.Rows.add
common.Rows.add = lambda self, row: (add(self, row), time.sleep(3600))
from alexnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def setup(tmp_path):
    """Samples (30 small JPEGs in 3 classes), a broken wheel, and the environment of a dry run."""
    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        pixels = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(samples / f"n{i % 3:08d}_{i}.JPEG", quality=90)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "broken-1.0-py3-none-any.whl").write_text("not a zip archive")
    env = {**os.environ, "DEVICE": "cpu", "SAMPLES": str(samples), "WHEELS": str(wheels),
           "PYTHON": sys.executable, "TMPDIR": str(tmp_path), "BATCH": "4", "BIG_BATCH": "8",
           "WORKER_COUNTS": "1 0", "MEASURE_SECONDS": "0.05", "WARMUP_SECONDS": "0",
           "SETTINGS": "plain fast-fp32", "TRAIN_SETTING": "fast-fp32", "DECODE": "workers",
           "NET_ARGS": TINY_NET}
    return tmp_path, env


def gpu_sh(tmp_path, env, **more):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(tmp_path / "res")], cwd=ROOT,
                          env={**env, **more}, capture_output=True, text=True, timeout=HANG_GUARD_S)
    rows = [json.loads(line) for line in (tmp_path / "res" / "rows.jsonl").read_text().splitlines()]
    return done, rows


def test_a_stage_stopped_at_its_time_limit_keeps_its_rows_and_the_table_still_prints(setup):
    tmp_path, env = setup
    python = tmp_path / "python"
    (tmp_path / "hang.py").write_text(HANG_AFTER_FIRST_ROW)
    python.write_text(f'#!/bin/sh\nif [ "$1 $2 $3 $4" = "-m alexnet bench model" ]; then shift 2; '
                      f'exec {sys.executable} {tmp_path / "hang.py"} "$@"; fi\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    done, rows = gpu_sh(tmp_path, env, PYTHON=str(python), STAGES="model", BUDGET="30", RESERVE="5")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "optional wheel broken-1.0-py3-none-any.whl did not install; going on without it" in out
    limit = int(out.split("model: up to ")[1].split("s")[0])
    assert 5 <= limit <= 25  # the budget less the reserve and the start
    assert "model: stopped at its time limit" in out and "the rows it wrote are kept" in out
    host, plain = rows
    assert host["kind"] == "host" and host["shm_bytes"] > 0 and host["cores"] >= 1
    assert (plain["kind"], plain["setting"], plain["round"]) == ("model", "plain", 1)
    table = (tmp_path / "res" / "table.txt").read_text()
    assert "model step: plain, batch 4" in table and "no rows from: data, train" in table
    assert table in out and "What one GPU cannot show" in table
    assert {p.name for p in (tmp_path / "res").iterdir()} == {"rows.jsonl", "log.txt", "host.txt", "table.txt"}
    assert "model: stopped at its time limit" in (tmp_path / "res" / "log.txt").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("alexnet-gpu.")]  # its scratch folder went


@pytest.mark.slow
def test_the_dry_run_exercises_every_stage(setup):
    tmp_path, env = setup
    done, rows = gpu_sh(tmp_path, env, BUDGET="400", WEIGHTS="prepare=6 data=6 model=6 train=8 big=6 tests=6")
    assert done.returncode == 0, done.stderr
    for stage in ("prepare", "data", "model", "train", "big", "tests"):
        assert f"{stage}: done" in done.stdout, stage
    kinds = {(r["kind"], r.get("way") or r.get("setting")) for r in rows}
    assert {("data", "pipeline"), ("data", "usual_way"), ("model", "plain"), ("model", "fast-fp32")} <= kinds
    train = {(r["batch_size"], r["decode"], r["workers"]) for r in rows if r["kind"] == "train"}
    assert train == {(4, "workers", 1), (4, "examples", 1), (4, "workers", 0), (8, "workers", 1), (8, "examples", 1)}
    assert [r["round"] for r in rows if r.get("setting") == "plain" and "round" in r] == [1, 2]
    table = (tmp_path / "res" / "table.txt").read_text()
    for line in ("input pipeline: ours", "model step: fast-fp32", "end to end, batch 8: pytorch/examples way",
                 "where the time of a fast-fp32 step goes"):
        assert line in table
    assert "12 skipped" in (tmp_path / "res" / "cuda-tests.txt").read_text()  # the CUDA tests, skipped here


def test_the_table_reads_what_rows_exist_and_compares_within_a_folder(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    train = dict(kind="train", batch_size=128, setting="compile", data_wait_share=0.1, host_cpu_use=0.5)
    lines = [dict(kind="host", gpu="H100", driver="580", torch="2.11", cuda="13.0", cores=16, shm_bytes=2**34),
             dict(train, decode="workers", workers=15, images_per_s=9000.0, images_per_host_cpu_s=1200.0),
             dict(train, decode="examples", workers=15, images_per_s=3000.0, images_per_host_cpu_s=200.0)]
    (first / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "model", "sett')
    (second / "rows.jsonl").write_text(json.dumps(dict(train, decode="examples", workers=15, images_per_s=1000.0))
                                       + "\n" + json.dumps(dict(train, decode="device", workers=8, images_per_s=5000.0)))
    assert gpu_table.main([str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert "H100, driver 580, torch 2.11 (CUDA 13.0)" in out
    ours_workers = next(line for line in out.splitlines() if "decoding in workers" in line)
    assert "9000" in ours_workers and "3.00x" in ours_workers  # against the first folder's baseline
    assert "1200.0 images per host CPU second (6.00x)" in ours_workers
    ours_device = next(line for line in out.splitlines() if "decoding in device" in line)
    assert "5.00x" in ours_device  # against the second folder's own baseline
    assert gpu_table.main([str(tmp_path / "none")]) == 1


def event(key, us, device=torch.autograd.DeviceType.CUDA, annotation=False):
    return SimpleNamespace(key=key, count=2, device_type=device, self_device_time_total=us,
                           is_user_annotation=annotation)


def test_the_kernel_table_keeps_device_kernels_only_and_their_shares_add_to_at_most_one():
    from alexnet.bench.model import device_kernels

    events = [event("## Call CompiledFxGraph fabc ##", 900.0, annotation=True),  # spans the kernels below
              event("Optimizer.step#PaperSGD.step", 300.0, annotation=True),
              event("aten::convolution", 800.0, device=torch.autograd.DeviceType.CPU),
              event("sm90_xmma_fprop", 600.0), event("triton_poi_fused_relu", 300.0), event("Memcpy HtoD", 100.0)]
    top = device_kernels(events, cuda=True, steps=2, top=12)
    assert [e["name"] for e in top] == ["sm90_xmma_fprop", "triton_poi_fused_relu", "Memcpy HtoD"]
    assert [e["share"] for e in top] == pytest.approx([0.6, 0.3, 0.1])
    assert top[0]["ms_per_step"] == pytest.approx(0.3) and top[0]["calls_per_step"] == 1
    assert sum(e["share"] for e in device_kernels(events, cuda=True, steps=2, top=2)) <= 1


def cifar_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / "train" / c).mkdir(parents=True)
        for n in range(12):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "train" / c / f"{n}.png")
    return root


def lrn_gpu_sh(tmp_path, results, **env):
    env = {**os.environ, "DEVICE": "cpu", "EPOCHS": "1", "ANNEAL": "0 0", "SEEDS": "0", "PYTHON": sys.executable,
           "CIFAR": str(tmp_path / "cifar"), "TMPDIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "lrn_gpu.sh"), str(results)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)


def archived(path: Path) -> set[str]:
    import tarfile

    with tarfile.open(path) as archive:
        return {name.removeprefix("./") for name in archive.getnames()}


def test_lrn_gpu_stops_at_its_budget_packs_one_archive_and_resumes_from_it(tmp_path):
    cifar_folder(tmp_path / "cifar")
    first = lrn_gpu_sh(tmp_path, tmp_path / "one", BUDGET="31", ARCHIVE=str(tmp_path / "one.tar.gz"))
    assert first.returncode == 0, first.stderr
    assert "stopped at the budget of 31s" in first.stderr and "carry the archive back as RESUME" in first.stderr
    assert {"lrn-without-0.log", "lrn-with-0.log"} <= archived(tmp_path / "one.tar.gz")
    again = lrn_gpu_sh(tmp_path, tmp_path / "two", BUDGET="31", RESUME=str(tmp_path / "one.tar.gz"),
                       ARCHIVE=str(tmp_path / "two.tar.gz"))
    assert again.returncode == 0 and "resumed from" in again.stderr
    assert (tmp_path / "two" / "lrn-with-0.log").is_file()  # what came back, unpacked before the runs
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.slow
def test_lrn_gpu_tests_on_a_held_out_share_without_a_test_set_and_archives_the_result(tmp_path):
    cifar_folder(tmp_path / "cifar")
    done = lrn_gpu_sh(tmp_path, tmp_path / "res", ARCHIVE=str(tmp_path / "back.tar.gz"))
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "res" / "lrn" / "numbers.json").read_text())
    assert (result["train_images"], result["test_images"]) == (19, 5)  # a fifth held out
    assert {"lrn/numbers.json", "lrn/lrn.md", "lrn-with-0.log"} <= archived(tmp_path / "back.tar.gz")
