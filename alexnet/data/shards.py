"""Shards in the WebDataset layout, written whole or not at all, with the byte position of each sample.

A shard is a plain tar: for each sample ``<key>.jpg`` (or ``<key>.npy``) then ``<key>.cls`` (the
class index as text). Any tar tool and the webdataset library read it. Where each image's bytes
start and how long they are goes into the prepared dataset's index, so that a sample is read with
one ``pread`` and nothing else is touched.

Two checksums guard against damage after writing: a CRC-32 of each sample's bytes, checked on every
read (microseconds per sample, against a millisecond to decode it), and a SHA-256 of each whole
file, checked by ``alexnet prepare --verify`` (it also covers tar headers and class members).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from pathlib import Path

BLOCK = tarfile.BLOCKSIZE
DIGEST = "sha256"  # of each whole file, recorded in meta.json


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def sample_checksum(data: bytes) -> int:
    """The CRC-32 of a sample's stored bytes (recorded at prepare time, checked on each read)."""
    return zlib.crc32(data)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a whole file, read in blocks (bounded memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def write_atomically(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file, flush it to disk, then rename it to ``path``.

    A reader (or a resumed run) therefore sees either nothing or the whole file, whenever the
    process is killed.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # fixed metadata: same input, same bytes
    return info


def write_shard(path: Path, records: list[tuple[str, int, bytes]], extension: str) -> list[tuple[int, int]]:
    """Write ``records`` ``(key, label, encoded image)`` as one shard; ``(offset, size)`` of each image."""
    positions: list[tuple[int, int]] = []

    def write(f):
        with tarfile.open(fileobj=f, mode="w") as tar:
            for key, label, data in records:
                tar.addfile(_member(f"{key}.{extension}", len(data)), io.BytesIO(data))
                # tar.offset is now past the padded data: step back over it to where it starts.
                positions.append((tar.offset - -(-len(data) // BLOCK) * BLOCK, len(data)))
                cls = str(label).encode()
                tar.addfile(_member(f"{key}.cls", len(cls)), io.BytesIO(cls))

    write_atomically(path, write)
    return positions
