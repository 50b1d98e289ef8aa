"""`alexnet prepare --verify OUT`: every file of a prepared dataset checked against the SHA-256
recorded in its meta.json."""

from __future__ import annotations

import sys
from pathlib import Path

from alexnet import console
from alexnet.data.dataset import listed_files, prepare_again, read_meta
from alexnet.data.shards import file_digest


def verify(out, progress: bool = False) -> list[str] | None:
    """Check every file of the prepared dataset ``out`` against the digest recorded in its meta.json:
    one line per missing or damaged file (``[]``: all whole), or None for a dataset prepared before
    checksums were recorded."""
    out = Path(out)
    meta = read_meta(out)
    checksums = meta.get("checksums")
    if not checksums:
        return None
    problems = []
    for name in console.progress(listed_files(meta), unit="file", desc="verify", disable=not progress):
        path, expected = out / name, checksums["files"].get(name)
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif expected is None:
            problems.append(f"{path}: no checksum recorded for it in {out / 'meta.json'}")
        elif file_digest(path, checksums["algorithm"]) != expected:
            problems.append(f"{path}: damaged (its {checksums['algorithm']} differs from the one recorded "
                            "when it was prepared)")
    return problems


def verify_command(out) -> int:
    """``alexnet prepare --verify OUT``: the damaged files, one line each, and exit status 1; or a
    line saying all is whole."""
    problems = verify(out, progress=True)
    meta = read_meta(Path(out))
    shards = sum(len(info["shards"]) for info in meta["splits"].values())
    if problems is None:
        print(f"{out} has no checksums (prepared by a version that did not record them): nothing verified; "
              f"to have them, {prepare_again(out, meta)}")
        return 0
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} damaged or missing files in {out}; {prepare_again(out, meta)}", file=sys.stderr)
        return 1
    others = len(listed_files(meta)) - shards
    print(f"all {shards} shards whole (and {others} index and mean files) in {out}")
    return 0
