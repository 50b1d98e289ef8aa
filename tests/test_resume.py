"""Resumption: a run killed (kill -9 or SIGTERM) and resumed ends bit for bit where an
uninterrupted run ends, on the CPU with the same seed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.kit import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
# 3 epochs of 8 steps (64 images, batch 8), dropout on (so the RNG state matters), a
# checkpoint after every step, and 30 ms per training forward so that a kill lands mid-run.
ARGS = ["--data", "synthetic", "--arch", "tiny-test", "--preset", "full", "--epochs", "3", "--limit", "64", "--val-limit", "24", "--batch-size", "8",
        "--device", "cpu", "--seed", "3", "--checkpoint-minutes", "0", "--log-every", "3",
        "--model-option", "num_classes=5"]
ENV = {**os.environ, "TINY_SLEEP": "0.03", "OMP_NUM_THREADS": "1"}


def launch(run_dir: Path, *extra: str) -> subprocess.Popen:
    argv = ["train", "--resume", str(run_dir)] if extra == ("resume",) else ["train", *ARGS, "--out", str(run_dir)]
    return subprocess.Popen([sys.executable, "-m", "tests.kit", *argv], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def progress(run_dir: Path) -> int:
    """Training samples done according to last.pt (0 when there is none yet)."""
    path = run_dir / "checkpoints" / "last.pt"
    try:
        ck = torch.load(path, weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0
    return ck["epoch"] * 64 + ck["position"]


def wait_for(run_dir: Path, proc: subprocess.Popen, samples: int, timeout: float = HANG_GUARD_S) -> None:
    deadline = time.monotonic() + timeout
    while progress(run_dir) < samples:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"the run made no progress in {timeout:.0f} s"
        time.sleep(0.01)


def final(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def metrics(run_dir: Path) -> list[dict]:
    drop = ("images_per_s", "data_wait_share", "seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    proc = launch(run_dir)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, err[-2000:]
    return run_dir


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = final(a)["model"], final(b)["model"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert metrics(a) == metrics(b)


def test_a_run_killed_at_several_points_and_resumed_ends_with_the_same_weights_bit_for_bit(tmp_path, uninterrupted):
    """kill -9 mid first epoch and at the start of the second, SIGTERM mid third; resumed each time."""
    run_dir = tmp_path / "run"
    proc = launch(run_dir)
    for target in (20, 70):  # samples done, 64 per epoch
        wait_for(run_dir, proc, target)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = launch(run_dir, "resume")
    wait_for(run_dir, proc, 150)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    # SIGTERM: the current step finishes, last.pt is saved there, and the message says how to resume.
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM" in err and f"alexnet train --resume {run_dir}" in err
    ck = final(run_dir)
    assert ck["position"] % 8 == 0 and 150 <= ck["epoch"] * 64 + ck["position"] < 192
    proc = launch(run_dir, "resume")
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, err[-2000:]
    assert_same_run(uninterrupted, run_dir)


def test_sigterm_to_the_whole_process_group_with_loader_workers_still_saves(tmp_path):
    """Schedulers such as SLURM signal every process of a job, the loader's workers included."""
    from tests.kit import make_prepared

    data = make_prepared(tmp_path)
    run_dir = tmp_path / "run"
    argv = ["train", "--data", str(data), "--arch", "tiny-test", "--preset", "full", "--epochs", "3",
            "--batch-size", "4", "--workers", "2", "--device", "cpu", "--checkpoint-minutes", "0",
            "--out", str(run_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "tests.kit", *argv], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + HANG_GUARD_S
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert f"alexnet train --resume {run_dir}" in err


PREPARED_ARGS = ["--arch", "tiny-test", "--preset", "full", "--epochs", "2", "--batch-size", "4", "--workers",
                 "1", "--device", "cpu", "--seed", "3", "--checkpoint-minutes", "0"]


def train_prepared(data: Path, run_dir: Path, resume: bool = False, signal_at: str = "") -> subprocess.CompletedProcess:
    """``alexnet train`` on prepared shards (12 steps of 4 per epoch); ``signal_at``: tests/kit.py's TINY_SIGNAL."""
    argv = ["--resume", str(run_dir)] if resume else ["--data", str(data), *PREPARED_ARGS, "--out", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TINY_SIGNAL": signal_at}
    return subprocess.run([sys.executable, "-m", "tests.kit", "train", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from tests.kit import make_prepared

    return make_prepared(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def uninterrupted_on_shards(tmp_path_factory, prepared) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    done = train_prepared(prepared, run_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


def test_a_run_on_prepared_shards_killed_mid_epoch_and_resumed_ends_with_the_same_weights_bit_for_bit(
        tmp_path, prepared, uninterrupted_on_shards):
    """The path users run: prepared shards, a loader worker, dropout on. kill -9 at step 7 of the
    first epoch, SIGTERM at step 4 of the second, resumed each time from the last checkpoint."""
    run_dir = tmp_path / "run"
    killed = train_prepared(prepared, run_dir, signal_at="SIGKILL@7")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (final(run_dir)["epoch"], final(run_dir)["position"]) == (0, 6 * 4)  # saved after step 6
    stopped = train_prepared(prepared, run_dir, resume=True, signal_at="SIGTERM@10")  # 6 forwards, then 4
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert (final(run_dir)["epoch"], final(run_dir)["position"]) == (1, 4 * 4)
    done = train_prepared(prepared, run_dir, resume=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_run(uninterrupted_on_shards, run_dir)


@pytest.mark.usefixtures("tiny_net")
def test_resume_takes_a_checkpoint_file_of_a_run_folder_as_pytorch_examples_does(tmp_path, capsys):
    """``--resume RUN_DIR/checkpoints/FILE`` continues from that file, in RUN_DIR, as ``--resume RUN_DIR``
    continues from its last.pt; a file outside a run folder, or a model file, is one line naming it."""
    import shutil

    from tests.kit import alexnet_command

    args = ["--data", "synthetic", "--arch", "tiny-test", "--preset", "full", "--limit", "32", "--val-limit", "8",
            "-b", "8", "--device", "cpu", "--seed", "5", "--model-option", "num_classes=3"]
    by_folder, by_file = tmp_path / "by-folder", tmp_path / "by-file"
    assert alexnet_command(capsys, "train", *args, "--epochs", "1", "--out", by_folder).returncode == 0
    shutil.copytree(by_folder, by_file)
    kept = (by_file / "checkpoints" / "last.pt").rename(by_file / "checkpoints" / "epoch1.pt")
    assert alexnet_command(capsys, "train", "--resume", by_folder, "--epochs", "2").returncode == 0
    done = alexnet_command(capsys, "train", "--resume", kept, "--epochs", "2")
    assert done.returncode == 0 and f"resuming from epoch 2, step 1 of 4 ({kept})" in done.stderr
    assert final(by_file)["epoch"] == 2
    assert_same_run(by_folder, by_file)
    for path, said in ((shutil.copy(kept, tmp_path / "loose.pt"), "a file outside a run folder"),
                       (by_file / "checkpoints" / "best.pt", "a model file, not a training checkpoint")):
        status, _, err = alexnet_command(capsys, "train", "--resume", path)
        assert status == 2 and err.count("\n") == 1 and f"{path}" in err and said in err, err
