"""Reading an untrusted source's files: regular files only, of bounded size, no folder twice,
names made harmless; and the :class:`Source` every kind of source becomes."""

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.classes import imagenet_classes
from alexnet.data.images import BadImage
from alexnet.errors import UserError


@dataclass
class Source:
    """A dataset to prepare: its description, classes ``[(id, name)]`` and per split its items."""

    kind: str
    path: Path
    classes: list[tuple[str, str]]
    splits: dict[str, list[tuple]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # split -> remark recorded in meta.json


_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
          stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` (symlinks followed); BadImage unless it is a regular file of at most
    ``max_bytes``. Devices and FIFOs are never read: one could block forever."""
    def check(info):
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS.items() if test(info.st_mode)), "not a file")
            raise BadImage(f"not a regular file ({kind})")
        if info.st_size > max_bytes:
            raise BadImage(too_large(info.st_size, max_bytes))

    check(os.stat(path))
    # O_NONBLOCK: if it was swapped for a FIFO since, the open does not wait for a writer.
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        info = os.fstat(f.fileno())
        check(info)
        data = f.read(info.st_size + 1)  # read(n) sets n bytes aside first: not max_bytes for every image
        if len(data) > info.st_size:  # it grew since: read on, within the bound
            data += f.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise BadImage(too_large(len(data), max_bytes))
    return data


def read_source_file(path: Path, max_bytes: int) -> bytes:
    """:func:`read_regular` for a file describing a source (labels, batches): UserError naming the file."""
    try:
        return read_regular(path, max_bytes)
    except (BadImage, OSError) as err:
        raise UserError(f"{path}: {err.strerror if isinstance(err, OSError) else err}") from None


def too_large(size: int, max_bytes: int) -> str:
    return f"too large: {size} bytes, above the limit of {max_bytes}; not read"


def class_names(ids: list[str]) -> list[tuple[str, str]]:
    """``[(id, name)]`` for the classes ``ids`` (made :func:`class_ids`): ImageNet's name of a wnid, else the id."""
    known = imagenet_classes()
    return [(i, known.get(i, i)) for i in class_ids(ids)]


def class_ids(names: list[str]) -> list[str]:
    """Class names as ids: harmless path components, still distinct (``.`` and ``""`` are ``_`` and ``_-2``)."""
    return distinct([safe_component(name) for name in names])


def distinct(names: list[str]) -> list[str]:
    """``names`` with each repeat made ``<name>-N``, N the first from 2 that no other name has: sample keys must
    be unique, yet ``dup.JPEG`` and ``dup.png``, ``x.y.JPEG`` and ``x_y.JPEG`` or a CIFAR batch's can make one."""
    taken, seen, following, result = set(names), set(), {}, []
    for name in names:
        if name in seen:
            number = following.get(name, 2)
            while f"{name}-{number}" in taken:
                number += 1
            following[name] = number + 1
            name = f"{name}-{number}"
            taken.add(name)
        seen.add(name)
        result.append(name)
    return result


def files_under(folder: Path) -> list[tuple[Path, str | None]]:
    """The files below ``folder`` as ``(path, None)``, sorted, hidden ones left out; symlinks followed, but a link
    to a folder read already (``a/loop -> ..``) or a folder that cannot be listed comes as ``(path, reason)``."""
    found: list[tuple[Path, str | None]] = []
    seen = {_identity(folder): folder}

    def unreadable(err: OSError) -> None:
        found.append((Path(err.filename), f"unreadable folder: {err.strerror}"))

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            path = Path(root, name)
            try:
                first = seen.setdefault(_identity(path), path)
            except OSError as err:
                unreadable(err)
                continue
            if first == path:
                kept.append(name)
            else:
                found.append((path, f"a link to {first}, a folder read already"))
        dirs[:] = kept
        found += [(Path(root, f), None) for f in sorted(files) if not f.startswith(".")]
    return found


def _identity(folder: Path) -> tuple[int, int]:
    info = os.stat(folder)
    return info.st_dev, info.st_ino


def file_locator(path: Path, reason: str | None) -> tuple:
    return ("file", str(path)) if reason is None else ("skip", reason)


def safe_component(name: str) -> str:
    """``name`` as one path component: no separator, NUL, ``.`` or ``..`` (a member ``../x.jpg`` escapes)."""
    name = name.replace("/", "_").replace("\\", "_").replace("\0", "_")
    return name if name.strip(".") else "_" * max(len(name), 1)


def make_key(relative: str) -> str:
    """A sample's name in the shards: its path in the split without extension, each part a
    :func:`safe_component`; other dots become ``_`` (WebDataset splits a name at its first dot)."""
    *head, name = relative.split("/")
    stem = name.rsplit(".", 1)[0].replace(".", "_")
    return "/".join([safe_component(p) for p in head if p not in ("", ".")] + [safe_component(stem)])


def subdirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def class_files(split_dir: Path) -> list[tuple[str, str, Path, str | None]]:
    """``(class folder, key, path, reason)`` of the files in ``split_dir``'s class folders (:func:`files_under`)."""
    found = [(path.relative_to(split_dir).as_posix(), path, reason) for path, reason in files_under(split_dir)]
    return [(rel.split("/", 1)[0], make_key(rel), path, reason)
            for rel, path, reason in found if "/" in rel or reason is not None]
