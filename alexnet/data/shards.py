"""Shards in the WebDataset layout (a plain tar of ``<key>.jpg`` or ``.npy`` and ``<key>.cls``, the class
index as text, per sample), written whole or not at all, with the byte position of each sample.
"""

import hashlib
import io
import tarfile
import zlib
from pathlib import Path

from alexnet.atomic import write_atomically

BLOCK = tarfile.BLOCKSIZE
DIGEST = "sha256"  # of each whole file, recorded in meta.json


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


sample_checksum = zlib.crc32  # of a sample's stored bytes: recorded at prepare time, checked on each read


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a whole file, read in blocks (bounded memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed metadata: same input, same bytes
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, records: list[tuple[str, int, bytes]], extension: str) -> list[tuple[int, int]]:
    """Write ``records`` ``(key, label, encoded image)`` as one shard; ``(offset, size)`` of each image."""
    positions: list[tuple[int, int]] = []

    def write(f):
        with tarfile.open(fileobj=f, mode="w") as tar:
            for key, label, data in records:
                _add(tar, f"{key}.{extension}", data)
                positions.append((tar.offset - -(-len(data) // BLOCK) * BLOCK, len(data)))  # back from its padded end
                _add(tar, f"{key}.cls", str(label).encode())

    write_atomically(path, write)
    return positions
