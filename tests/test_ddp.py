"""Data-parallel training (DDP, gloo on the CPU) started by torchrun, against one process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.kit import HANG_GUARD_S, descendants, process_state


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


# --- a preempted multi-process run: exact resume, and no process outlives its launcher ------------

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tests.kit"]
# 2 epochs of 6 steps (48 images, global batch 8: 4 per process), dropout on (tiny-test's default),
# a loader worker per process, last.pt after every step.
SHARDS = ["--arch", "tiny-test", "--preset", "full", "--epochs", "2", "--batch-size", "8", "--workers", "1",
          "--device", "cpu", "--seed", "3", "--checkpoint-minutes", "0"]


def torchrun(data: Path, run_dir: Path, resume: bool = False, signal_at: str = "", **popen) -> subprocess.Popen:
    """``torchrun -m alexnet train`` (tiny-test) on prepared shards; ``signal_at``: tests/kit.py's TINY_SIGNAL,
    which each process sends itself."""
    argv = ["--resume", str(run_dir)] if resume else ["--data", str(data), *SHARDS, "--out", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TINY_SIGNAL": signal_at}
    return subprocess.Popen([*TORCHRUN, "train", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def finished(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    return proc.returncode, err


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from tests.kit import make_prepared

    return make_prepared(tmp_path_factory.mktemp("data"), per_class=(16, 2), size=24)


def test_a_preempted_two_process_run_resumes_to_the_same_weights_and_metrics_bit_for_bit(tmp_path, shards):
    """SIGTERM to torchrun's process group, as a scheduler preempts a job: torchrun passes it on, both
    processes save after their step and stop. Each process draws its own dropout masks: a checkpoint
    with only the main process's random states and running sums made every weight of the resumed run
    differ (issue 23). The processes stop themselves (SIGSTOP) at step 4 and go on only once both
    hold torchrun's SIGTERM, so that the stop lands there whatever the machine's load."""
    status, err = finished(torchrun(shards, tmp_path / "whole"))
    assert status == 0, err[-3000:]
    run = tmp_path / "cut"
    launcher = torchrun(shards, run, signal_at="SIGSTOP@4", start_new_session=True)
    stopped = _stopped_processes(launcher)
    os.killpg(launcher.pid, signal.SIGTERM)
    _wait_for(lambda: all(_pending(pid, signal.SIGTERM) for pid in stopped), launcher, "torchrun passing SIGTERM on")
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)
    status, err = finished(launcher)
    assert err.count("stopped by SIGTERM") == 1, err[-3000:]  # said once, by the main process
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert (ck["epoch"], ck["position"]) == (0, 4 * 8)
    status, err = finished(torchrun(shards, run, resume=True))
    assert status == 0, err[-3000:]
    whole, resumed = (torch.load(r / "checkpoints" / "last.pt", weights_only=True) for r in (tmp_path / "whole", run))
    for key in whole["model"]:
        assert torch.equal(whole["model"][key], resumed["model"][key]), key
    timing = ("images_per_s", "data_wait_share", "seconds")
    lines = [[{k: v for k, v in json.loads(line).items() if k not in timing}
              for line in (r / "metrics.jsonl").read_text().splitlines()] for r in (tmp_path / "whole", run)]
    assert lines[0] == lines[1] and len(lines[0]) == 2


def _pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` waits to be handled by the (stopped) process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    pending = next(line for line in status.splitlines() if line.startswith("ShdPnd:")).split()[1]
    return bool(int(pending, 16) & (1 << (sig - 1)))


def _wait_for(condition, launcher: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"waited {HANG_GUARD_S} s for {what}"
        time.sleep(0.05)


def _stopped_processes(launcher: subprocess.Popen) -> set[int]:
    """The two training processes under ``launcher``, once both have stopped themselves (SIGSTOP)."""
    stopped = set()

    def both_stopped():
        stopped.clear()
        stopped.update(p for p in descendants(launcher.pid) if process_state(p) == "T")
        return len(stopped) == 2

    _wait_for(both_stopped, launcher, "both processes to reach the step where they stop")
    return stopped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_processes_die_with_their_launcher_when_it_is_killed(tmp_path, shards):
    """torchrun starts its processes in sessions of their own: a SIGKILL to its process group left
    them training on into the run folder (issue 23). Each process stops itself (SIGSTOP) after its
    first step, so that the launcher is killed while all of them are alive."""
    run = tmp_path / "run"
    launcher = torchrun(shards, run, signal_at="SIGSTOP@2", start_new_session=True)
    _stopped_processes(launcher)
    below = descendants(launcher.pid)  # the two training processes and their loader workers
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.communicate()
    deadline = time.monotonic() + HANG_GUARD_S
    while alive := [p for p in below if process_state(p) not in ("", "Z")]:
        assert time.monotonic() < deadline, f"processes {alive} outlived their launcher"
        time.sleep(0.05)
    status, err = finished(torchrun(shards, run, resume=True))  # nothing holds the folder any more
    assert status == 0, err[-3000:]
