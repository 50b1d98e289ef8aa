"""Analysis outputs written whole or not at all (``alexnet.io``: temp file, fsync, rename)."""

from __future__ import annotations

import json
from pathlib import Path

from alexnet.io import atomic_path, atomic_write_text


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(json.dumps(obj, indent=2) + "\n", path)
    return Path(path)


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG, atomically, and release its memory."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)
