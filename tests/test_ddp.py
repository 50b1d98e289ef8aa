"""Data-parallel training (DDP, gloo on the CPU) started by torchrun, against one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.kit import HANG_GUARD_S


ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "--data", "synthetic", "--arch", "tiny-test", "--preset", "full", "--epochs", "2", "--limit", "64", "--val-limit", "37", "--batch-size", "8",
        "--device", "cpu", "--seed", "5", "--model-option", "num_classes=6", "--model-option", "dropout=0"]


def _train(out: Path, launcher: list[str]) -> list[dict]:
    env = {**os.environ, "TINY_FINAL": str(out / "final"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "-m", "tests.kit", *ARGS, "--out", str(out / "run")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]


def test_two_gloo_processes_end_identical_and_equal_to_one_process_on_the_same_global_batches(tmp_path):
    two = _train(tmp_path / "two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc_per_node=2"])
    one = _train(tmp_path / "one", [sys.executable])
    r0, r1 = (torch.load(tmp_path / "two" / "final" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(tmp_path / "one" / "final" / "rank0.pt", weights_only=True)
    for key in single:
        assert torch.equal(r0[key], r1[key]), key
        torch.testing.assert_close(r0[key], single[key], rtol=1e-4, atol=1e-5)
    saved = torch.load(tmp_path / "two" / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[k], r0[k]) for k in saved)
    for a, b in zip(two, one):
        # The same 37 validation images, each counted once: the same errors as one process.
        assert a["val_top1_error"] == b["val_top1_error"] and a["val_top5_error"] == b["val_top5_error"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
