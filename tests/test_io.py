"""Files are never half-written."""

import os

import pytest

from alexnet.atomic import atomic_path, atomic_write_text


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
