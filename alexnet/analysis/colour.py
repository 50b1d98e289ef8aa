"""How colour-specific first-layer kernels are: the number behind Figure 3's claim (section 6.1) that
tower 1's kernels are "largely colour-agnostic" and tower 2's "largely colour-specific":

    specificity(w) = ||w - grey(w)||^2 / ||w||^2,   grey(w)[c] = mean over c' of w[c']

0 for a grey kernel, 2/3 for a kernel in one channel and on average for random Gaussian weights (the
noise level, :func:`random_kernel_specificity`), 1 for an opponent kernel whose channels sum to zero.
"""

import math

import numpy as np

SEPARATION = 3.0  # standard errors between two towers' means for them to count as different


def colour_specificity(kernels: np.ndarray) -> np.ndarray:
    """Per-kernel share of energy outside the grey component, for kernels ``[K, 3, H, W]`` (0 for zeros)."""
    kernels = np.asarray(kernels, dtype=np.float64)
    if kernels.ndim != 4 or kernels.shape[1] != 3:
        raise ValueError(f"expected kernels of shape [K, 3, H, W], got {list(kernels.shape)}")
    grey = kernels.mean(axis=1, keepdims=True)
    total = (kernels**2).sum(axis=(1, 2, 3))
    colour = ((kernels - grey) ** 2).sum(axis=(1, 2, 3))
    return np.divide(colour, total, out=np.zeros_like(total), where=total > 0)


def tower_specificity(kernels: np.ndarray, towers: int) -> list[dict]:
    """Per tower (the t-th equal share of the kernels): kernel range, mean, median and per-kernel scores."""
    scores = colour_specificity(kernels)
    if len(scores) % towers:
        raise ValueError(f"{len(scores)} kernels do not split into {towers} towers")
    size = len(scores) // towers
    return [{"tower": t + 1, "kernels": [t * size, (t + 1) * size - 1], "mean_specificity": float(part.mean()),
             "median_specificity": float(np.median(part)), "per_kernel": [round(float(s), 6) for s in part]}
            for t, part in enumerate(np.split(scores, towers))]


def random_kernel_specificity(channels: int = 3, size: tuple[int, int] = (11, 11)) -> dict:
    """Mean and sd of the score of Gaussian kernels ``[channels, *size]``: grey energy chi-square with m = h*w
    degrees of freedom, the rest (C-1)m, so Beta((C-1)m/2, m/2): mean (C-1)/C, sd 0.035 for 11x11 RGB."""
    m = size[0] * size[1]
    a, b = (channels - 1) * m / 2, m / 2
    return {"mean": a / (a + b), "sd": math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))), "kernel": [channels, *size]}


def compare_towers(towers: list[dict], random: dict) -> dict | None:
    """Whether two towers' means lie :data:`SEPARATION` standard errors apart, as the paper's (section 6.1,
    either tower "modulo a renumbering of the GPUs"), beside random kernels'; None for one tower."""
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
        verdict = (f"tower {colour} more colour-specific, tower {3 - colour} nearer grey ({apart:.0f} standard "
                   "errors apart), as the paper says (which tower takes colour is arbitrary)")
    else:
        at_random = all(abs(m - random["mean"]) < SEPARATION * random["sd"] for m in means)
        verdict = (f"the towers do not differ ({apart:.1f} standard errors apart), not as the paper says"
                   + (", both at the level of random kernels" if at_random else ""))
    return {"means": means, "difference": difference, "standard_errors_apart": apart, "towers_differ": differ,
            "more_colour_specific": colour if differ else None, "as_the_paper_says": differ,
            "line": f"{head}: {verdict}"}
