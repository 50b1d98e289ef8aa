"""Reading a run folder (``alexnet train --out RUN_DIR``): config.yaml, metrics.jsonl and checkpoints/."""

import json
from pathlib import Path

from alexnet.errors import UserError


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch rows of ``RUN_DIR/metrics.jsonl`` (empty when absent): of an epoch written twice
    (a resumed run) the later row, a cut-short last line (a run killed while writing) skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows: dict[int, dict] = {}
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if n == len(lines):
                break
            raise UserError(f"{path}, line {n}: not JSON ({err})") from err
        if not isinstance(row, dict) or type(row.get("epoch")) is not int:
            raise UserError(f"{path}, line {n}: no whole-number \"epoch\" (the file is damaged)")
        rows[row["epoch"]] = row
    return [rows[e] for e in sorted(rows)]


def read_config(run_dir: str | Path) -> dict:
    """``RUN_DIR/config.yaml`` as a dict (empty when absent)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from err


def checkpoint_classes(path: str | Path) -> int | None:
    """The number of classes of a model file or checkpoint, read memory-mapped (the weights stay on disk)."""
    import torch

    from alexnet.classes import record_classes
    from alexnet.modelfile import read_model_file

    try:
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format torch file: the full read says what is wrong, or reads it
        record = read_model_file(path)
    return record_classes(record) if isinstance(record, dict) else None


def resolve_checkpoint(source: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, run folder or None) of a run folder (its ``checkpoints/best.pt``, else
    ``last.pt``) or of a checkpoint/model file (with the run folder whose ``checkpoints/`` holds it)."""
    from alexnet.modelfile import model_file

    source = Path(source)
    if source.is_dir():
        return model_file(source), source
    if not source.exists():
        raise UserError(f"{source}: no such run folder or checkpoint")
    run_dir = source.parent.parent  # a run folder's checkpoints/, for its metrics
    return source, run_dir if source.parent.name == "checkpoints" and (run_dir / "metrics.jsonl").exists() else None
