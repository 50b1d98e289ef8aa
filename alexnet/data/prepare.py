"""`alexnet prepare SOURCE OUT`: turn raw images into a prepared dataset, once (paper section 2).

Each image's shorter side is rescaled to 256 and its central 256x256 patch kept; the same pass sums the
training set's mean image (section 2) and RGB covariance (the PCA of section 4.1) exactly, in integers.
OUT holds WebDataset shards ``<split>/shard-NNNNNN.tar``, each split's ``index.npy`` (shard, byte offset,
byte size of each sample), ``labels.npy`` and ``crc32.npy``, ``mean.npy``, and ``meta.json`` (written last,
with the SHA-256 of every other file). ``OUT/.partial`` holds the job, its lock and each finished shard's
index and statistics: a killed run of the same job resumes there."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from alexnet import console
from alexnet.atomic import holding_lock, make_folder, remove_temporaries
from alexnet.cores import available_cores
from alexnet.data import download
from alexnet.defaults import ENCODINGS, MAX_PIXELS, SHARD_SIZE
from alexnet.data.dataset import listed_files, prepare_again, read_meta
from alexnet.data.prepare_shards import partial_file, space_for, write_shards
from alexnet.data.shards import DIGEST, file_digest, shard_name, write_atomically
from alexnet.data.sources import Source, open_source
from alexnet.errors import UserError

MIN_SIZE, MAX_SIZE = 8, 1024  # --size: at 1024 a shard's exact pixel sums take 25 MB; at 100000, 224 GiB
FORMAT_VERSION = 2  # 2: checksums (crc32.npy per split, SHA-256 of each file in meta.json)
HOLD_OUT = 20  # a source without validation images: 1 in 20 of each class's training images become them


def run(args) -> int:
    if args.verify is not None:
        if args.source is not None:
            raise UserError("--verify OUT takes no SOURCE: `alexnet prepare --verify OUT`")
        return verify_command(args.verify)
    if args.out is None:
        raise UserError("expected SOURCE and OUT: `alexnet prepare SOURCE OUT` (or `alexnet prepare --verify OUT`)")
    prepare(args.source, args.out, size=args.size, encoding=args.encoding, quality=args.quality,
            workers=args.workers, shard_size=args.shard_size, stats_sample=args.stats_sample,
            strict=args.strict, cache_dir=args.cache_dir, restart=args.restart, max_pixels=args.max_pixels)
    return 0


def ensure_prepared(data, cache_dir=None) -> Path:
    """A prepared dataset folder for ``data``: the folder itself, or a named dataset (``imagenette``,
    ``cifar10``) downloaded and prepared on first use into the cache (:func:`download.cache_root`)."""
    path = Path(data)
    if (path / "meta.json").is_file():
        return path
    if str(data) in download.DATASETS and not path.exists():
        out = download.cache_root(cache_dir) / str(data)
        return out if (out / "meta.json").is_file() else prepare(str(data), out, cache_dir=cache_dir)
    raise UserError(f"--data {data}: not a prepared dataset ({path / 'meta.json'} is missing) nor a known name "
                    f"({', '.join(download.DATASETS)}); make one with `alexnet prepare SOURCE OUT`, or run the "
                    "command that made it again if it was stopped")


def prepare(source, out, *, size: int = 256, encoding: str = "jpeg", quality: int = 90,
            workers: int | None = None, shard_size: int = SHARD_SIZE, stats_sample: int | None = None,
            strict: bool = False, cache_dir=None, progress: bool = True, restart: bool = False,
            max_pixels: int = MAX_PIXELS) -> Path:
    """Prepare ``source`` into ``out`` and return ``out``; run again after an interruption, it keeps the finished
    shards. ``restart`` first discards what an earlier run left; an image of over ``max_pixels`` is skipped."""
    out = Path(out)
    if encoding not in ENCODINGS:
        raise UserError(f"--format {encoding}: expected one of {', '.join(sorted(ENCODINGS))}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"--size {size}: expected {MIN_SIZE} to {MAX_SIZE} pixels (the paper: 256)")
    if max_pixels < 1 or shard_size < 1 or not 1 <= quality <= 100:
        raise UserError("--max-pixels and --shard-size must be positive and --quality between 1 and 100")
    if workers is not None and workers < 0:
        raise UserError(f"--workers {workers}: expected a number of worker processes, 1 or more, or 0 to "
                        "prepare in this process (default: one per core)")
    if Path(source).is_dir() and Path(source).resolve() in (out.resolve(), *out.resolve().parents):
        raise UserError(f"OUT {out} is inside SOURCE {source}: it would be read as part of the source; "
                        "choose an OUT outside it")
    options = {"size": size, "encoding": encoding, "quality": quality if encoding == "jpeg" else None,
               "shard_size": shard_size, "stats_sample": stats_sample}
    if max_pixels != MAX_PIXELS:  # recorded only when changed: OUTs made before it existed stay the same job
        options["max_pixels"] = max_pixels
    if restart:
        refuse_foreign(out)
    elif finished(out, str(source), options):
        return out
    partial = out / ".partial"
    made_out = not out.exists()
    make_folder(partial, f"OUT {out}")
    with holding_lock(partial / "lock", out):  # two runs writing the same shards would spoil them
        if restart:
            clear_partial(out)
        job = {"source": str(source), **options, "version": FORMAT_VERSION}
        resuming = claim(out, job)
        try:
            named = str(source) in download.DATASETS and not Path(str(source)).exists()
            src = open_source(download.fetch(str(source), cache_dir) if named else Path(source), partial)
            if not src.splits.get("train"):
                raise UserError(f"SOURCE {source}: found no training images")
        except BaseException:
            if not resuming:  # this job wrote nothing: leave no trace that would hold OUT (lock included)
                shutil.rmtree(partial, ignore_errors=True)
                if made_out and out.is_dir() and not any(out.iterdir()):
                    out.rmdir()
            raise
        if restart:  # only now that the source opened: a mistyped SOURCE costs no dataset
            discard_results(out)
        if not resuming:
            write_atomically(partial / "options.json", lambda f: f.write(json.dumps(job).encode()))
        hold_out_validation(src)
        plan = {split: [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
                for split, items in src.splits.items() if items}
        write_shards(out, plan, _stats_selection(len(src.splits["train"]), stats_sample), options, strict,
                     available_cores() if workers is None else workers, progress)
        samples = sum(map(len, src.splits.values()))
        with space_for(out, 40 * samples + 4 * 3 * size**2 + 2**20):  # index files, mean.npy, meta.json
            finish(out, src, plan, options, str(source))
    return out


def _stats_selection(n: int, sample: int | None) -> np.ndarray:
    """Which training images enter the mean and the PCA: all, or ``sample`` of them drawn at random (seed 0)."""
    if sample is None or sample >= n:
        return np.ones(n, dtype=bool)
    if sample < 1:
        raise UserError(f"--stats-sample {sample}: expected a positive number of images")
    return np.isin(np.arange(n), np.random.default_rng(0).choice(n, size=sample, replace=False))


def hold_out_validation(src: Source) -> None:
    """Give a source without validation images a ``val`` split (noted in meta.json): 1 in HOLD_OUT of
    each class's training images (rounded down: none of a class with fewer), at random (seed 0)."""
    items = src.splits["train"]
    if src.splits.get("val"):
        return
    labels = np.array([item[1] for item in items])
    held = np.zeros(len(items), dtype=bool)
    rng = np.random.default_rng(0)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held[rng.choice(members, size=len(members) // HOLD_OUT, replace=False)] = True
    if held.any():
        src.splits["val"] = [item for item, h in zip(items, held) if h]
        src.splits["train"] = [item for item, h in zip(items, held) if not h]
        src.notes["val"] = (f"held out from the training images, which the source alone has: 1 in {HOLD_OUT} "
                            "of each class, at random (seed 0)")


def pca(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (as columns, each of positive sum so that the same
    data always gives the same numbers) of a 3x3 RGB covariance (section 4.1)."""
    values, vectors = np.linalg.eigh(covariance)  # ascending
    values, vectors = values[::-1], vectors[:, ::-1]
    vectors *= np.where(vectors.sum(axis=0) < 0, -1.0, 1.0)
    return values, vectors


def _gather_split(out: Path, split: str, shards: list, digests: dict) -> tuple[dict, dict]:
    """Write the split's index, labels and checksums (their digests added to ``digests``); its meta.json entry, sums."""
    positions, labels, crcs, skipped = [], [], [], []
    totals = {"sum_image": 0, "products": 0, "count": 0}
    for number in range(len(shards)):
        with np.load(partial_file(out, split, number)) as part:
            positions.append(part["positions"])
            labels.append(part["labels"])
            crcs.append(part["crc32"])
            digests[f"{split}/{shard_name(number)}"] = str(part["digest"])
            skipped += [{"path": p, "reason": r} for p, r in json.loads(str(part["skipped"]))]
            totals = {name: totals[name] + part[name] for name in totals}
    index = np.column_stack([np.repeat(np.arange(len(shards)), list(map(len, labels))), np.concatenate(positions)])
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
    # The source folder, for the benchmarks that read the originals; not an archive's copy, deleted below.
    path = Path(src.path).resolve()
    meta = {"format": "alexnet-prepared-dataset", "version": FORMAT_VERSION,
            "source": {"kind": src.kind, "given": source,
                       "path": None if (out / ".partial").resolve() in (path, *path.parents) else str(path)},
            "image": {"size": options["size"], "encoding": options["encoding"], "quality": options["quality"],
                      "extension": ENCODINGS[options["encoding"]],
                      "preprocessing": "RGB; shorter side rescaled to size (bilinear); central size x size patch"},
            "options": options,
            "classes": [{"index": i, "id": cid, "name": name} for i, (cid, name) in enumerate(src.classes)],
            "splits": splits, "stats": stats,
            "checksums": {"algorithm": DIGEST, "files": dict(sorted(digests.items()))}}
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


def finished(out: Path, source: str, options: dict) -> bool:
    """Whether ``out`` already holds this prepared dataset (said on screen); UserError if it holds
    another, or one with a file missing."""
    if not (out / "meta.json").is_file():
        return False
    meta = read_meta(out)
    given = meta.get("source", {}).get("given")
    if meta.get("options") != options or given != source:
        raise UserError(f"{out} already holds a dataset prepared from {given} with other options or from "
                        f"another source ({meta.get('options')}); choose another OUT, or add --restart to replace it")
    if missing := [name for name in listed_files(meta) if not (out / name).is_file()]:
        raise UserError(f"{out / missing[0]} is missing ({len(missing)} files of {out} are); "
                        f"{prepare_again(out, meta)}")
    shutil.rmtree(out / ".partial", ignore_errors=True)
    counts = ", ".join(f"{s['samples']} {name}" for name, s in meta["splits"].items())
    print(f"{out} is already prepared ({counts} images); nothing to do")
    return True


def claim(out: Path, job: dict) -> bool:
    """Whether this run resumes an unfinished run of the same ``job`` (only then do shards fit together);
    else ``out/.partial`` is cleared for it, but another job's finished shards are an error (``--restart``)."""
    partial = out / ".partial"
    try:
        before = json.loads((partial / "options.json").read_text())
    except (OSError, ValueError):
        before = None
    if before == job:
        return True
    if before is not None and list(partial.glob("*.npz")):
        raise UserError(f"{out} holds an unfinished run of another job ({before}); run that same command "
                        "again to finish it, or add --restart to discard it and start this one")
    clear_partial(out)  # leftovers of a run that recorded no job, or of another job that finished no shard
    if before is not None:
        discard_results(out)
    return False


def clear_partial(out: Path) -> None:
    """Empty ``out/.partial`` but for the lock this run holds."""
    for entry in (out / ".partial").iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.name != "lock":
            entry.unlink()


def discard_results(out: Path) -> None:
    """Remove what `alexnet prepare` writes in ``out`` outside ``.partial``, and nothing else."""
    for name in ("meta.json", "mean.npy"):
        (out / name).unlink(missing_ok=True)
    remove_temporaries(out)  # a killed write's, which no other process makes here while this run holds the lock
    for folder in [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]:
        ours = [path for pattern in ("shard-*.tar", "index.npy", "labels.npy", "crc32.npy")
                for path in folder.glob(pattern)]
        for path in ours:
            path.unlink()
        ours += remove_temporaries(folder)
        if ours and not any(folder.iterdir()):
            folder.rmdir()


def refuse_foreign(out: Path) -> None:
    """``--restart`` removes files by their names: not in a folder whose meta.json is another program's."""
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return  # none, or a prepared dataset's that is damaged
    if not isinstance(meta, dict) or meta.get("format") != "alexnet-prepared-dataset":
        raise UserError(f"{out / 'meta.json'} is not the meta.json of a prepared dataset: --restart removes "
                        f"nothing from {out}; choose another OUT")


def verify_command(out) -> int:
    """``alexnet prepare --verify OUT``: each file checked against the digest in meta.json; one line per
    damaged or missing file and exit status 1, or one line saying all is whole."""
    folder = Path(out)
    meta = read_meta(folder)
    if not (checksums := meta.get("checksums")):
        print(f"{out} has no checksums (prepared by a version that did not record them): nothing verified; "
              f"to have them, {prepare_again(out, meta)}")
        return 0
    problems = []
    for name in console.progress(listed_files(meta), unit="file", desc="verify"):
        path, expected = folder / name, checksums["files"].get(name)
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif expected is None:
            problems.append(f"{path}: no checksum recorded for it in {folder / 'meta.json'}")
        elif file_digest(path, checksums["algorithm"]) != expected:
            problems.append(f"{path}: damaged (its {checksums['algorithm']} differs from the one recorded "
                            "when it was prepared)")
    if problems:
        print("\n".join(problems))
        print(f"{len(problems)} damaged or missing files in {out}; {prepare_again(out, meta)}", file=sys.stderr)
        return 1
    shards = sum(len(info["shards"]) for info in meta["splits"].values())
    print(f"all {shards} shards whole (and {len(listed_files(meta)) - shards} index and mean files) in {out}")
    return 0
