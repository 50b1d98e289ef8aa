"""One writer per folder: a command that writes a folder refuses a second process that would write
it at the same time, with one line naming the folder and the holder's process id; a holder killed
with SIGKILL blocks nothing (the lock dies with it)."""

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import kit

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--data", "synthetic", "--arch", "tiny-test", "--preset", "full", "--epochs", "1", "--limit", "16",
         "--val-limit", "8", "--batch-size", "8", "--device", "cpu", "--checkpoint-minutes", "0",
         "--model-option", "num_classes=3"]


def start(*argv, signal_at: str = "") -> subprocess.Popen:
    """``python -m tests.kit ARGV`` (alexnet with tiny-test); ``signal_at``: tests/kit.py's TINY_SIGNAL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TINY_SIGNAL": signal_at}
    return subprocess.Popen([sys.executable, "-m", "tests.kit", *map(str, argv)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_stopped(proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + kit.HANG_GUARD_S
    while kit.process_state(proc.pid) != "T":
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run never reached the step where it stops itself"
        time.sleep(0.02)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=kit.HANG_GUARD_S)
    return proc.returncode, err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_second_train_into_a_folder_being_written_is_refused_and_a_killed_holder_blocks_nothing(tmp_path):
    run = tmp_path / "run"
    # The first run stops itself (SIGSTOP) at its first training step: it holds the folder, with
    # config.yaml written and no last.pt yet, the moment a second fresh run once deleted its files.
    first = start(*TRAIN, "--out", run, signal_at="SIGSTOP@1")
    wait_until_stopped(first)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    try:
        for argv in ([*TRAIN, "--out", run], ["train", "--resume", run]):
            status, err = finish(start(*argv))
            assert status == 2 and err.count("\n") == 1, err[-2000:]
            assert f"{run} is being written by another process (pid {first.pid})" in err
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    finally:
        first.kill()
        first.wait()
    status, err = finish(start(*TRAIN, "--out", run))  # the dead holder's lock went with it
    assert status == 0, err[-2000:]
    assert (run / "metrics.jsonl").read_text().count("\n") == 1


@pytest.fixture
def held(tmp_path):
    """tmp_path/out, locked as a running command locks its folder (an flock on the folder itself)."""
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield out
    os.close(fd)


@pytest.mark.parametrize("command", [
    ["experiment", "ablations", "--data", "synthetic"],
    ["retrieval"], ["figures", "RUN"], ["train", *TRAIN[1:]]])
def test_every_command_that_writes_a_folder_refuses_one_being_written(tmp_path, capsys, held, tiny_net, command):
    run = kit.save_run(tmp_path / "run")
    argv = [run if a == "RUN" else a for a in command]
    status, out, err = kit.alexnet_command(capsys, *argv, "--out", held)
    assert status == 2 and err.count("\n") == 1, err
    assert f"{held} is being written by another process (pid {os.getpid()}); wait for it to finish" in err
    assert not any(held.iterdir())


def test_a_command_that_fails_before_writing_leaves_no_folder_and_no_lock_behind(tmp_path, capsys, tiny_net):
    out = tmp_path / "new"
    status, _, err = kit.alexnet_command(capsys, "retrieval", "--out", out)
    assert status == 2 and "no fc7-train.npy" in err and not out.exists()
    held = tmp_path / "kept"
    held.mkdir()
    assert kit.alexnet_command(capsys, "retrieval", "--out", held).returncode == 2
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    os.close(fd)
    assert held.is_dir() and not any(held.iterdir())
