"""The last step of `alexnet prepare`: each split's index, labels and checksums, the mean image and
RGB PCA (sections 2 and 4.1) from the shards' exact sums, and ``meta.json``, written last."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from alexnet.defaults import ENCODINGS
from alexnet.data.prepare_shards import partial_file
from alexnet.data.shards import DIGEST, file_digest, shard_name, write_atomically
from alexnet.data.sources import Source
from alexnet.errors import UserError

FORMAT_VERSION = 2  # 2: checksums (crc32.npy per split, SHA-256 of each file in meta.json)


def pca(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (as columns, each of positive sum so that the same
    data always gives the same numbers) of a 3x3 RGB covariance (section 4.1)."""
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    vectors *= np.where(vectors.sum(axis=0) < 0, -1.0, 1.0)
    return values, vectors


def _gather_split(out: Path, split: str, shards: list, digests: dict) -> tuple[dict, dict]:
    """Write the split's index, labels and checksums from its shards' partial files, and add each
    file's digest to ``digests``; its meta.json entry and its summed statistics."""
    positions, labels, crcs, shard_of, skipped = [], [], [], [], []
    totals = {"sum_image": 0, "products": 0, "count": 0}
    for number in range(len(shards)):
        with np.load(partial_file(out, split, number)) as part:
            positions.append(part["positions"])
            labels.append(part["labels"])
            crcs.append(part["crc32"])
            digests[f"{split}/{shard_name(number)}"] = str(part["digest"])
            shard_of.append(np.full(len(part["labels"]), number, np.int64))
            skipped += [{"path": p, "reason": r} for p, r in json.loads(str(part["skipped"]))]
            totals = {name: totals[name] + part[name] for name in totals}
    index = np.column_stack([np.concatenate(shard_of), np.concatenate(positions)])
    info = {"samples": len(index), "shards": [f"{split}/{shard_name(n)}" for n in range(len(shards))],
            "index": f"{split}/index.npy", "labels": f"{split}/labels.npy", "crc32": f"{split}/crc32.npy",
            "skipped": skipped}
    for name, array in (("index", index), ("labels", np.concatenate(labels)), ("crc32", np.concatenate(crcs))):
        _save_npy(out, info[name], array, digests)
    return info, totals


def _statistics(out: Path, totals: dict, size: int, source: str, digests: dict) -> dict:
    """The mean image (saved as mean.npy), mean colour and RGB PCA from the exact training sums."""
    count = int(totals["count"])
    if count == 0:
        raise UserError(f"SOURCE {source}: none of the training files is a usable image")
    _save_npy(out, "mean.npy", (totals["sum_image"] / count).astype(np.float32), digests)
    pixels = count * size**2
    mean_rgb = totals["sum_image"].sum(axis=(0, 1)) / pixels
    eigvals, eigvecs = pca(totals["products"] / pixels - np.outer(mean_rgb, mean_rgb))
    return {"images": count, "scale": "0-255", "mean_image": "mean.npy", "mean_rgb": mean_rgb.tolist(),
            "pca_eigvals": eigvals.tolist(), "pca_eigvecs": eigvecs.tolist(),
            "pca_eigvecs_layout": "3x3, row = R,G,B component, column = eigenvector"}


def finish(out: Path, src: Source, plan: dict, options: dict, source: str) -> None:
    """Gather the shards' indexes and statistics into index files, mean.npy and meta.json (written last)."""
    splits, digests = {}, {}
    for split, shards in plan.items():
        splits[split], totals = _gather_split(out, split, shards, digests)
        if split in src.notes:
            splits[split]["note"] = src.notes[split]
        if split == "train":
            stats = _statistics(out, totals, options["size"], source, digests)
            stats["exact"] = options["stats_sample"] is None or options["stats_sample"] >= len(src.splits["train"])
    # The source folder, for the benchmarks that read the original images; not an archive's
    # extracted copy, deleted with OUT/.partial below.
    path = Path(src.path).resolve()
    meta = {
        "format": "alexnet-prepared-dataset", "version": FORMAT_VERSION,
        "source": {"kind": src.kind, "given": source,
                   "path": None if (out / ".partial").resolve() in (path, *path.parents) else str(path)},
        "image": {"size": options["size"], "encoding": options["encoding"], "quality": options["quality"],
                  "extension": ENCODINGS[options["encoding"]],
                  "preprocessing": "RGB; shorter side rescaled to size (bilinear); central size x size patch"},
        "options": options, "splits": splits, "stats": stats,
        "classes": [{"index": i, "id": cid, "name": name} for i, (cid, name) in enumerate(src.classes)],
        "checksums": {"algorithm": DIGEST, "files": dict(sorted(digests.items()))},
    }
    write_atomically(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    shutil.rmtree(out / ".partial", ignore_errors=True)
    n_skipped = sum(len(s["skipped"]) for s in splits.values())
    counts = ", ".join(f"{s['samples']} {name}" for name, s in splits.items())
    skipped = f"; {n_skipped} files skipped (listed in meta.json)" if n_skipped else ""
    print(f"prepared {counts} images into {out}{skipped}")
    for name, note in src.notes.items():
        print(f"  {name}: {note}")


def _save_npy(out: Path, name: str, array: np.ndarray, digests: dict) -> None:
    """Save ``array`` as ``out/name`` and record its digest in ``digests[name]``."""
    write_atomically(out / name, lambda f: np.save(f, array, allow_pickle=False))
    digests[name] = file_digest(out / name, DIGEST)
