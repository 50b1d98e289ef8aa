"""How colour-specific first-layer kernels are: the number behind Figure 3's claim (section 6.1).

The paper observes that the 48 conv1 kernels of tower 1 are "largely colour-agnostic" and the
48 of tower 2 "largely colour-specific". A kernel is colour-agnostic when its three colour
channels are the same picture; so we split each kernel into its grey component (the mean
over the channels, repeated in each of them) and the rest, and measure the share of the
kernel's energy (sum of squares) that lies outside the grey component:

    specificity(w) = ||w - grey(w)||^2 / ||w||^2,   grey(w)[c] = mean over c' of w[c']

It is 0 for a grey kernel, 2/3 for a kernel that lives in one colour channel only, and 1 for
an opponent kernel whose channels sum to zero (red minus green, for example).
"""

from __future__ import annotations

import numpy as np


def colour_specificity(kernels: np.ndarray) -> np.ndarray:
    """Per-kernel share of energy outside the grey component, for kernels ``[K, 3, H, W]``.

    A kernel of all zeros has no colour and scores 0.
    """
    kernels = np.asarray(kernels, dtype=np.float64)
    if kernels.ndim != 4 or kernels.shape[1] != 3:
        raise ValueError(f"expected kernels of shape [K, 3, H, W], got {list(kernels.shape)}")
    grey = kernels.mean(axis=1, keepdims=True)
    total = (kernels**2).sum(axis=(1, 2, 3))
    colour = ((kernels - grey) ** 2).sum(axis=(1, 2, 3))
    return np.divide(colour, total, out=np.zeros_like(total), where=total > 0)


def tower_specificity(kernels: np.ndarray, towers: int) -> list[dict]:
    """Colour specificity of each tower's kernels: tower t holds the t-th equal share of the kernels.

    Returns one dict per tower with the kernel range, the mean and median score and the
    per-kernel scores (as lists, ready for JSON).
    """
    scores = colour_specificity(kernels)
    if len(scores) % towers:
        raise ValueError(f"{len(scores)} kernels do not split into {towers} towers")
    size = len(scores) // towers
    result = []
    for t in range(towers):
        part = scores[t * size : (t + 1) * size]
        result.append(
            {
                "tower": t + 1,
                "kernels": [t * size, (t + 1) * size - 1],
                "mean_specificity": float(part.mean()),
                "median_specificity": float(np.median(part)),
                "per_kernel": [round(float(s), 6) for s in part],
            }
        )
    return result
