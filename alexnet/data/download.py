"""Named datasets downloaded on request: checksum-verified, resumable, with a clear message offline. A download
goes to ``<file>.part``, continued where it stopped (HTTP Range) when run again; only a file whose checksum
matches the published one gets its final name, and a file found there is checked too."""

import os
import urllib.error
import urllib.request
from collections import namedtuple
from http.client import HTTPException
from pathlib import Path

from alexnet import console
from alexnet.data.shards import file_digest
from alexnet.errors import UserError

CACHE_ENV = "ALEXNET_CACHE"
BLOCK = 1 << 20


class DownloadError(UserError):
    """A dataset could not be downloaded (offline, server error, checksum mismatch)."""


Remote = namedtuple("Remote", "url md5")  # md5 as published (torchvision's dataset classes check the same sums)
DATASETS = {
    # fast.ai's 10-class ImageNet subset, shorter side 320: train/<wnid>/, val/<wnid>/.
    "imagenette": Remote("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
                         "3df6f0d01a2c9592104656642f5e78a3"),
    # The python version: pickled batches data_batch_1..5 (train) and test_batch (val).
    "cifar10": Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
}


def cache_root(cache_dir=None) -> Path:
    """``cache_dir``, else ``$ALEXNET_CACHE``, else ``~/.cache/alexnet``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "alexnet")


def fetch(name: str, cache_dir=None) -> Path:
    """The archive of the named dataset in the cache, downloaded first if it is not there yet."""
    remote = DATASETS[name]
    dest = cache_root(cache_dir) / "downloads" / remote.url.rsplit("/", 1)[-1]
    if not dest.is_file():
        return download(remote.url, dest, remote.md5)
    if (got := file_digest(dest, "md5")) != remote.md5:
        raise DownloadError(f"{dest}: {_mismatch(remote.md5, got)}; it is not the file of {remote.url}: "
                            "delete it (or put the right file there) and run again")
    return dest


def _mismatch(expected: str, got: str) -> str:
    return f"checksum mismatch: expected MD5 {expected}, got {got}"


def download(url: str, dest: Path, md5: str, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if an earlier try left one; check its md5."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status != 206:  # the server sends the whole file: start over
                have = 0
            total = have + response.length if response.length is not None else None
            with open(part, "ab" if have else "wb") as f, console.progress(
                total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                for block in iter(lambda: response.read(BLOCK), b""):
                    f.write(block)
                    bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
    except urllib.error.HTTPError as err:
        if not (err.code == 416 and have):  # 416 after a full .part: nothing left to fetch
            raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, HTTPException) as err:
        reason = getattr(err, "reason", err)
        done = part.stat().st_size if part.exists() else 0
        again = (f"or run again to resume the {done:,} bytes downloaded so far" if done
                 else "or run again once online")
        raise DownloadError(f"cannot download {url} ({reason}). Without network, fetch it by other means "
                            f"and put it at {dest} (its MD5 is checked), {again}") from None
    if (got := file_digest(part, "md5")) != md5:
        part.unlink()
        raise DownloadError(f"{url}: {_mismatch(md5, got)}; the download was deleted, run again to fetch it afresh")
    os.replace(part, dest)
    return dest
