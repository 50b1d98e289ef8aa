"""Checkpoints, and the random-number states that make a resumed run exact.

A checkpoint is a plain dict of tensors and Python values, so it loads with
``torch.load(path, weights_only=True)``: the keys of a model file (``model``, the state
dict in the one-device layout; ``arch``, ``options``, ``class_names``; so that
``alexnet.load_model`` reads it), then ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (the epoch in
progress, from 0), ``position`` (training samples done in it), ``rng``, ``config``, and
``progress`` (the epoch's running sums, so its metrics line comes out the same), and in a run of
several processes ``ranks`` (each process's ``rng`` and running ``sums``: each draws its own dropout).
A run's ``best.pt`` is a model file only (the first keys, with ``mean``, ``epoch``, ``best_error``
and ``config``): half the size, since the optimiser's momentum is as large as the weights.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.errors import UserError
from alexnet.atomic import atomic_torch_save
from alexnet.modelfile import read_model_file


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically: a kill at any moment leaves the previous checkpoint whole."""
    atomic_torch_save(checkpoint, path)


RESUME_KEYS = ("optimizer", "scheduler", "scaler", "epoch", "position", "rng", "best_error", "progress")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint in ``path``, read as a model file is (never unpickling code) and checked to
    hold what a resumed run needs; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there (a run writes checkpoints/last.pt after its first "
                        "epoch or --checkpoint-minutes)")
    record = read_model_file(path)
    missing = [key for key in RESUME_KEYS if key not in record]
    if missing:
        raise UserError(f"{path}: a model file, not a training checkpoint (no {', '.join(missing)}): a run "
                        "resumes from its checkpoints/last.pt")
    return record


def rng_states() -> dict[str, Any]:
    """Every random-number state the run draws from, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
