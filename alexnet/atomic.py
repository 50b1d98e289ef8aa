"""Files never half-written (a temporary beside them, fsynced, renamed; a killed writer's temporary
is removed by the next write of the file), and folders that one process writes at a time.
"""

import errno
import fcntl
import glob
import json
import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager, suppress
from pathlib import Path

from alexnet.errors import UserError


def write_error(path: Path, err: OSError, needed: int | None = None,
                advice: str = "free some space or write elsewhere") -> UserError:
    """The UserError for ``path`` that cannot be written: the reason; on a full disk the free space,
    the space it needs (``needed``, in bytes) and ``advice``."""
    if err.errno == errno.ENOSPC:
        folder = next((p for p in (path, *path.parents) if p.is_dir()), Path("."))
        wanted = f"writing it needs about {_size(needed)}, " if needed else ""
        return UserError(f"{path}: no space left on the device ({wanted}{_size(shutil.disk_usage(folder).free)} "
                         f"free there); {advice}")
    other = f" {err.filename}" if err.filename and str(err.filename) != str(path) else ""
    return UserError(f"{path}: cannot write it ({err.strerror or err}{':' + other if other else ''})")


def make_folder(path: Path, label: str) -> None:
    """Make ``path`` and its parents; a failure is a one-line UserError starting with ``label``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        where = f": {err.filename}" if err.filename and str(err.filename) != str(path) else ""
        raise UserError(f"{label}: cannot make the folder {path} ({err.strerror or err}{where})") from None


@contextmanager
def only_writer(folder: Path, label: str):
    """Hold an exclusive ``flock`` on ``folder`` (made with ``label`` if missing) while this process
    writes there: another gets a UserError naming the holder. The lock adds no file and dies with its
    process; a folder this call made that is still empty at the end is removed."""
    folder = Path(folder)
    made = not folder.exists()
    make_folder(folder, label)
    with holding_lock(folder, folder):
        try:
            yield
        finally:
            with suppress(OSError):
                if made and not any(folder.iterdir()):
                    folder.rmdir()  # before the lock goes: the next writer finds no folder, or its own


@contextmanager
def holding_lock(lock: Path, folder: Path):
    """:func:`only_writer`'s lock on ``lock``: ``folder`` itself, or a lock file in it (made if missing)."""
    while True:
        try:
            fd = os.open(lock, os.O_RDONLY if lock.is_dir() else os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise write_error(lock, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(os.fstat(fd).st_ino)
            os.close(fd)
            raise UserError(f"{folder} is being written by another process{f' (pid {holder})' if holder else ''}; "
                            "wait for it to finish, or choose another folder") from None
        except OSError as err:  # a file system without locks (ENOLCK)
            os.close(fd)
            raise write_error(lock, err) from None
        with suppress(OSError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)  # removed or replaced before the lock was taken: a lock on it guards nothing
    try:
        yield
    finally:
        os.close(fd)


def _lock_holder(inode: int) -> int | None:
    """The process holding an ``flock`` on the file of ``inode``, from Linux's /proc/locks (else None)."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for fields in map(str.split, lines):
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return int(fields[4])
    return None


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


@contextmanager
def atomic_path(path: str | os.PathLike, needed: int | None = None):
    """Yield a temporary path beside ``path``, fsynced and renamed to ``path`` on success (a kill leaves
    the old file or the new one); an OSError becomes :func:`write_error` (``needed``: bytes)."""
    path = Path(path)
    try:
        with _atomic_path(path) as tmp:
            yield tmp
    except OSError as err:
        raise write_error(path, err, needed) from None


def write_atomically(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary renamed to ``path`` as :func:`atomic_path`, an OSError left as it is."""
    with _atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        write(f)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete (and list) the temporaries killed writes left in ``folder``, where no other process writes."""
    removed = [tmp for tmp in Path(folder).glob(".*.tmp") if tmp.is_file()]
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


@contextmanager
def _atomic_path(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}@{socket.gethostname()}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies: an ordinary file
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporaries of ``path`` (``.NAME.PID@HOST.XXXXXXXX.tmp``) whose writer, of this host, is dead."""
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


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    import torch  # here, so that the command line's options (train/config.py) stay light

    with atomic_path(path, needed=_tensor_bytes(obj, torch.Tensor)) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)  # a file, not a path: its writes raise OSError, which torch then replaces
        except RuntimeError as err:
            # torch.save reports a failed write (a full disk) as "RuntimeError: [enforce fail ...]
            # unexpected pos", raised while handling the OSError that says why
            cause = err.__context__
            while cause is not None and not isinstance(cause, OSError):
                cause = cause.__context__
            if cause is None:
                raise
            raise cause from None


def _tensor_bytes(obj, tensor: type) -> int:
    """The bytes of the tensors in ``obj`` (nested dicts, lists and tuples): about its file size."""
    if isinstance(obj, tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        obj = list(obj.values())
    return sum(_tensor_bytes(v, tensor) for v in obj) if isinstance(obj, (list, tuple)) else 0


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(json.dumps(obj, indent=2) + "\n", path)
    return Path(path)


MAX_RUN_RECORD_BYTES = 64 << 20  # a 35-epoch Figure 1 run's record is about 10 kB


def read_run_record(path: Path):
    """A stored experiment run written by :func:`write_json`, or None; a file that is not JSON or larger
    than :data:`MAX_RUN_RECORD_BYTES` is a UserError naming it (no caller trains over it)."""
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
