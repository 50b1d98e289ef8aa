"""Files are never half-written, a full disk included."""

import errno
import os
import subprocess

import pytest
import torch

from alexnet.atomic import atomic_path, atomic_torch_save, atomic_write_text
from alexnet.errors import UserError
from tests import kit


def test_an_atomic_write_replaces_the_file_whole_with_ordinary_permissions(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text("new", target)
    assert target.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


class FillsUp:
    """A file whose disk fills after ``room`` bytes: then every write fails as a full disk's does."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def test_torch_save_reports_a_full_disk_as_a_runtime_error_not_an_oserror(tmp_path):
    """Why a checkpoint's writer cannot catch OSError alone: torch.save replaces it."""
    with open(tmp_path / "x.pt", "wb") as f, pytest.raises(RuntimeError, match="enforce fail"):
        torch.save({"w": torch.zeros(1000)}, FillsUp(f, room=200))


@pytest.fixture
def full_disk(monkeypatch):
    """torch.save, as on a disk that fills after 200 bytes (torch raises its RuntimeError)."""
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *args, **kwargs: real_save(obj, FillsUp(f, 200), *args,
                                                                               **kwargs))


def test_a_checkpoint_on_a_full_disk_is_the_one_line_no_space_error_and_the_previous_file_stays(tmp_path, full_disk):
    target = tmp_path / "last.pt"
    target.write_bytes(b"previous")
    with pytest.raises(UserError, match=f"{target}: no space left on the device .writing it needs about 400 bytes"):
        atomic_torch_save({"w": torch.zeros(100)}, target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


TRAIN = ["train", "--data", "synthetic", "--arch", "tiny-test", "--epochs", "1", "--limit", "16", "--val-limit", "8",
         "--batch-size", "8", "--device", "cpu", "--model-option", "num_classes=3"]


def test_train_on_a_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, tiny_net, request):
    run = tmp_path / "run"
    assert kit.alexnet_command(capsys, *TRAIN, "--out", run).returncode == 0
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    request.getfixturevalue("full_disk")  # from here on
    status, _, err = kit.alexnet_command(capsys, "train", "--resume", run, "--epochs", "2")
    assert status == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith(f"alexnet train: error: {run / 'checkpoints'}")
    assert "no space left on the device" in err
    assert last.read_bytes() == before and not list(last.parent.glob(".*.tmp"))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs at tmp_path/disk: needs root and a kernel that lets this process mount."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or not allowed)")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_train_on_a_real_full_disk_is_one_line_and_leaves_no_half_file(tmp_path, capsys, tiny_net, small_tmpfs):
    """A checkpoint of a 1000-class tiny-test (about 1 MiB with its momentum) on a 1 MiB disk."""
    run = small_tmpfs / "run"
    status, _, err = kit.alexnet_command(capsys, *TRAIN[:-1], "num_classes=1000", "--out", run)
    assert status == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith(f"alexnet train: error: {run / 'checkpoints'}")
    assert "no space left on the device" in err
    assert not list(run.rglob(".*.tmp"))
    for written in run.rglob("*.pt"):  # best.pt, half as large as last.pt, fits: whole
        torch.load(written, weights_only=True)
