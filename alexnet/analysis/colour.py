"""How colour-specific first-layer kernels are: the number behind Figure 3's claim (section 6.1).

The paper observes that the 48 conv1 kernels of tower 1 are "largely colour-agnostic" and the
48 of tower 2 "largely colour-specific". A kernel is colour-agnostic when its three colour
channels are the same picture; so we split each kernel into its grey component (the mean
over the channels, repeated in each of them) and the rest, and measure the share of the
kernel's energy (sum of squares) that lies outside the grey component:

    specificity(w) = ||w - grey(w)||^2 / ||w||^2,   grey(w)[c] = mean over c' of w[c']

It is 0 for a grey kernel, 2/3 for a kernel that lives in one colour channel only, and 1 for
an opponent kernel whose channels sum to zero (red minus green, for example). A kernel of random
Gaussian weights also scores 2/3 on average (:func:`random_kernel_specificity`): that is the
noise level a tower's number has to be read against, an untrained network's two towers both sit
at it, and only a tower well below it is colour-agnostic. :func:`compare_towers` says whether
two towers differ, as the paper's do, by more than their kernels' spread explains.
"""

from __future__ import annotations

import math

import numpy as np

SEPARATION = 3.0  # standard errors between two towers' means for them to count as different


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


def random_kernel_specificity(channels: int = 3, size: tuple[int, int] = (11, 11)) -> dict:
    """What a kernel of independent Gaussian weights ``[channels, *size]`` scores: mean and standard
    deviation over such kernels.

    At each of the m = h*w positions the grey component is the projection of the C channel values
    on (1, ..., 1); for Gaussian weights its energy is chi-square with m degrees of freedom and the
    rest chi-square with (C-1)m, independent, so the score is Beta((C-1)m/2, m/2) distributed: mean
    (C-1)/C (2/3 for RGB) whatever the size, and for 11x11 RGB kernels a standard deviation of 0.035.
    """
    m = size[0] * size[1]
    a, b = (channels - 1) * m / 2, m / 2
    return {"mean": a / (a + b), "sd": math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))),
            "kernel": [channels, *size]}


def compare_towers(towers: list[dict], random: dict) -> dict | None:
    """Whether two towers' kernels differ in colour specificity (the paper, section 6.1: the 48 of
    one GPU "largely color-agnostic", the 48 of the other "largely color-specific"), beside the
    random-kernel level; None for a network of one tower.

    The towers differ when their means lie more than :data:`SEPARATION` standard errors apart (the
    standard error of the difference from each tower's per-kernel spread). Which tower takes the
    colour is arbitrary: the paper finds it "modulo a renumbering of the GPUs".
    """
    if len(towers) != 2:
        return None
    scores = [np.asarray(t["per_kernel"], dtype=np.float64) for t in towers]
    means = [float(s.mean()) for s in scores]
    error = math.sqrt(sum(s.var(ddof=1) / len(s) if len(s) > 1 else 0.0 for s in scores))
    difference = abs(means[1] - means[0])
    apart = difference / error if error > 0 else (math.inf if difference > 0 else 0.0)
    colour = 1 + int(means[1] > means[0])
    differ = apart > SEPARATION
    head = f"tower 1 {means[0]:.2f}, tower 2 {means[1]:.2f} (a random kernel {random['mean']:.2f})"
    if differ:
        verdict = (f"tower {colour} more colour-specific, tower {3 - colour} nearer grey "
                   f"({apart:.0f} standard errors apart), as the paper says (which tower takes colour "
                   f"is arbitrary)")
    else:
        verdict = (f"the towers do not differ ({apart:.1f} standard errors apart), not as the paper says"
                   + (", both at the level of random kernels" if all(
                       abs(m - random["mean"]) < SEPARATION * random["sd"] for m in means) else ""))
    return {"means": means, "difference": difference, "standard_errors_apart": apart,
            "towers_differ": differ, "more_colour_specific": colour if differ else None,
            "as_the_paper_says": differ, "line": f"{head}: {verdict}"}
