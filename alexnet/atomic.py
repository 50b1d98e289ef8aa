"""Files that are never half-written: write to a temporary name in the same folder, fsync, rename.

A write that fails for a reason of the file system (full, read-only, a path through a file, no
permission) raises a one-line UserError naming the file; the previous file stays whole and the
temporary is removed. A kill leaves the temporary behind: the next write of the same file removes it
(its name holds the writer's process id and host), and :func:`remove_temporaries` clears a folder.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from alexnet.errors import UserError


def write_error(path: Path, err: OSError, needed: int | None = None) -> UserError:
    """What the user reads when ``path`` cannot be written or made: the file, the reason and, on a
    full disk, the space there is and (``needed``, in bytes) the space the file needs."""
    if err.errno == errno.ENOSPC:
        folder = next((p for p in (path, *path.parents) if p.is_dir()), Path("."))
        wanted = f"it needs about {_size(needed)}, " if needed else ""
        return UserError(f"{path}: cannot write it, the disk is full ({wanted}{_size(shutil.disk_usage(folder).free)} "
                         "free there); free some space or write elsewhere")
    other = f" {err.filename}" if err.filename and str(err.filename) != str(path) else ""
    return UserError(f"{path}: cannot write it ({err.strerror or err}{':' + other if other else ''})")


def make_folder(path: Path, label: str) -> None:
    """``path`` and its parents; a file in the way, a read-only or full file system is a one-line
    UserError starting with ``label`` (the option or argument that named the folder)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        where = f": {err.filename}" if err.filename and str(err.filename) != str(path) else ""
        raise UserError(f"{label}: cannot make the folder {path} ({err.strerror or err}{where})") from None


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


@contextmanager
def atomic_path(path: str | os.PathLike, needed: int | None = None):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    A crash or kill at any moment leaves either the previous file or the new one, whole. An
    OSError of the file system becomes :func:`write_error` (``needed``: the bytes it will need).
    """
    path = Path(path)
    try:
        with _atomic_path(path) as tmp:
            yield tmp
    except OSError as err:
        raise write_error(path, err, needed) from None


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that killed atomic writes left in ``folder`` (not below it); the
    paths removed. Call it only where no other process is writing."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def _atomic_path(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}@{socket.gethostname()}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporaries of ``path`` (``.NAME.PID@HOST.XXXXXXXX.tmp``) whose writer, a process
    of this host, is dead: what a killed write of ``path`` left. A live writer's stays."""
    host = socket.gethostname()
    for tmp in path.parent.glob(glob.escape(f".{path.name}.") + "*.tmp"):
        writer = re.fullmatch(r"(\d{1,9})@([^@]+)\.[^.@]+\.tmp", tmp.name[len(path.name) + 2:])
        if writer and writer[2] == host and not _alive(int(writer[1])):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        pass
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    import torch  # here, so that the command line's options (train/config.py) stay light

    with atomic_path(path, needed=_tensor_bytes(obj, torch.Tensor)) as tmp:
        torch.save(obj, tmp)


def _tensor_bytes(obj, tensor: type) -> int:
    """The bytes of the tensors in ``obj`` (nested dicts, lists and tuples): about its file size."""
    if isinstance(obj, tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, tensor) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, tensor) for v in obj)
    return 0


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(json.dumps(obj, indent=2) + "\n", path)
    return Path(path)


MAX_RUN_RECORD_BYTES = 64 << 20  # a 35-epoch Figure 1 run's record is about 10 kB


def read_run_record(path: Path):
    """A stored experiment run written by :func:`write_json`: its JSON, or None when there is no
    such file. A file that is not JSON (cut short, overwritten) or larger than
    :data:`MAX_RUN_RECORD_BYTES` is a UserError naming it, so that no caller trains over it and
    loses what it held, and no file is read whole whatever its size."""
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_RUN_RECORD_BYTES:
            raise UserError(f"{path}: not a run record (larger than {MAX_RUN_RECORD_BYTES:,} bytes); "
                            "delete it to redo that run")
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a run record ({err}); delete it to redo that run") from None


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG, atomically, and release its memory."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)
