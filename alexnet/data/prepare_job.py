"""The job record, the lock and ``--restart`` of `alexnet prepare`: what OUT holds, who writes it.

A run records its job (source and options) in ``OUT/.partial/options.json`` and holds an exclusive
lock on ``OUT/.partial/lock`` while it writes, so that a killed run is resumed only by the same
job, two runs never write the same shards, and ``--restart`` removes only what `alexnet prepare`
wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from alexnet.atomic import holding_lock
from alexnet.data.dataset import listed_files, prepare_again, read_meta
from alexnet.errors import UserError


def only_writer(lock_file: Path):
    """Hold an exclusive lock on OUT for this run: two runs writing the same shards would spoil them."""
    return holding_lock(lock_file, lock_file.parent.parent)


def finished(out: Path, source: str, options: dict) -> bool:
    """Whether ``out`` already holds this prepared dataset (said on screen); an error if made otherwise
    or if one of its files is missing."""
    if not (out / "meta.json").is_file():
        return False
    meta = read_meta(out)
    given = meta.get("source", {}).get("given")
    if meta.get("options") != options or given != source:
        raise UserError(f"{out} already holds a dataset prepared from {given} with other options or from "
                        f"another source ({meta.get('options')}); choose another OUT, or add --restart to "
                        "replace it")
    missing = [name for name in listed_files(meta) if not (out / name).is_file()]
    if missing:
        raise UserError(f"{out / missing[0]} is missing ({len(missing)} files of {out} are); "
                        f"{prepare_again(out, meta)}")
    shutil.rmtree(out / ".partial", ignore_errors=True)
    counts = ", ".join(f"{s['samples']} {name}" for name, s in meta["splits"].items())
    print(f"{out} is already prepared ({counts} images); nothing to do")
    return True


def claim(out: Path, job: dict) -> bool:
    """Whether this run resumes an unfinished run of the same ``job``; else ``out/.partial`` is
    cleared for it. A resumed run must be the same job as the interrupted one, or its shards would
    not fit together: another job's unfinished run that already wrote shards is an error (keep it or
    ``--restart``); one that wrote none is simply replaced."""
    partial = out / ".partial"
    try:
        before = json.loads((partial / "options.json").read_text())
    except (OSError, ValueError):
        before = None
    if before == job:
        return True
    if before is not None and list((out / ".partial").glob("*.npz")):
        raise UserError(f"{out} holds an unfinished run of another job ({before}); run that same command "
                        "again to finish it, or add --restart to discard it and start this one")
    # Nothing to resume: leftovers of a run that recorded no job (a source it could not open), or of
    # another job that finished no shard.
    clear_partial(out)
    if before is not None:
        discard_results(out)
    return False


def clear_partial(out: Path) -> None:
    """Empty ``out/.partial`` but for the lock this run holds."""
    for entry in (out / ".partial").iterdir():
        if entry.name == "lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def discard_results(out: Path) -> None:
    """Remove what `alexnet prepare` writes in ``out`` outside ``.partial``, and nothing else."""
    for name in ("meta.json", "mean.npy"):
        for path in (out / name, out / f"{name}.tmp"):
            path.unlink(missing_ok=True)
    patterns = ("shard-*.tar", "shard-*.tar.tmp", "index.npy", "labels.npy", "crc32.npy", "*.npy.tmp")
    for folder in [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]:
        ours = [path for pattern in patterns for path in folder.glob(pattern)]
        for path in ours:
            path.unlink()
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


def remove_partial(out: Path, made_out: bool) -> None:
    """Remove ``out/.partial`` (lock included: a failed run holds nothing) and ``out`` if this run made it."""
    shutil.rmtree(out / ".partial", ignore_errors=True)
    if made_out and out.is_dir() and not any(out.iterdir()):
        out.rmdir()
