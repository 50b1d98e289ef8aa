"""The paper's pictures, drawn with matplotlib's Agg backend: each function returns the figure and
its :class:`Layout` (what was drawn), so that tests check a picture without looking at pixels."""

from dataclasses import dataclass, field

import numpy as np

from alexnet.classes import chance_error


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported only when a picture is drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


@dataclass
class Layout:
    """What a figure holds: panels (blocks, images or rows) and the items in each."""
    panels: int
    items_per_panel: list[int] = field(default_factory=list)
    notes: dict = field(default_factory=dict)


def kernel_mosaic(kernels: np.ndarray, rows: int, cols: int, pad: int = 1) -> np.ndarray:
    """Tile kernels ``[K, 3, h, w]`` into one RGB image, row by row, ``pad`` white pixels apart; each is
    scaled on its own around zero (0 mid-grey, its largest absolute weight black or full colour)."""
    k, _, h, w = kernels.shape
    if k > rows * cols:
        raise ValueError(f"{k} kernels do not fit in {rows}x{cols} cells")
    mosaic = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3))
    for i, kernel in enumerate(kernels):
        scale = np.abs(kernel).max()
        image = 0.5 + 0.5 * kernel / scale if scale > 0 else np.full_like(kernel, 0.5)
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        mosaic[top : top + h, left : left + w] = image.transpose(1, 2, 0)
    return mosaic


def draw_kernels(kernels: np.ndarray, towers: int, specificity: list[dict] | None = None,
                 cols: int = 16, random_level: float | None = None):
    """Figure 3: one block of kernels per tower (the paper's: 3 rows of 16, tower 1 above tower 2), each
    titled with its colour specificity and, given ``random_level``, what random kernels score."""
    plt = pyplot()
    per_tower = len(kernels) // towers
    cols = min(cols, per_tower)
    rows = -(-per_tower // cols)
    fig, axes = plt.subplots(towers, 1, figsize=(cols * 0.55, towers * rows * 0.75 + 0.6), squeeze=False)
    for t, ax in enumerate(axes[:, 0]):
        block = kernels[t * per_tower : (t + 1) * per_tower]
        ax.imshow(kernel_mosaic(block, rows, cols), interpolation="nearest")
        title = f"tower {t + 1}: kernels {t * per_tower}-{(t + 1) * per_tower - 1}"
        if specificity is not None:
            title += f", colour specificity {specificity[t]['mean_specificity']:.2f}"
            if random_level is not None:
                title += f" (random kernels: {random_level:.2f})"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig, Layout(panels=towers, items_per_panel=[per_tower] * towers, notes={"rows": rows, "cols": cols})


def draw_predictions(images: list[np.ndarray], top5: list[list[tuple[str, float]]],
                     truths: list[str], true_ranks: list[int | None] | None = None, cols: int = 4):
    """Figure 4 (left): each image above its five most probable labels (``top5[i]``: (label, probability)),
    the correct one red at ``true_ranks[i]`` (None: absent; default: found by label)."""
    from matplotlib.patches import Patch
    plt = pyplot()
    if true_ranks is None:
        true_ranks = [next((r for r, (label, _) in enumerate(top) if label == truth), None)
                      for top, truth in zip(top5, truths)]
    n = len(images)
    rows = -(-n // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(cols * 2.6, rows * 4.0 + 0.4),
                             gridspec_kw={"height_ratios": [2.0, 1.3] * rows}, squeeze=False)
    bars = []
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        image_ax, bar_ax = axes[2 * r, c], axes[2 * r + 1, c]
        image_ax.axis("off")
        if i >= n:
            bar_ax.axis("off")
            continue
        image_ax.imshow(images[i])
        image_ax.set_title(_short(truths[i]), fontsize=8)
        count = len(top5[i])
        labels, probs = zip(*reversed(top5[i]))
        colours = ["tab:red" if count - 1 - j == true_ranks[i] else "tab:blue" for j in range(count)]
        bar_ax.barh(range(count), probs, color=colours)
        bar_ax.set_yticks(range(count), [_short(label) for label in labels], fontsize=7)
        bar_ax.set_xlim(0, 1)
        bar_ax.tick_params(axis="x", labelsize=6)
        if true_ranks[i] is None:
            # under the probability axis, centred: inside the chart it covered the bars and their labels
            bar_ax.text(0.5, -0.2, f"true class not in top {count}", transform=bar_ax.transAxes,
                        ha="center", va="top", fontsize=7, color="tab:red", gid="not-in-top")
        bars.append(len(bar_ax.patches))
    fig.legend(handles=[Patch(color="tab:red", label="true class"), Patch(color="tab:blue", label="other labels")],
               loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))
    missed = [i for i in range(n) if true_ranks[i] is None]
    return fig, Layout(panels=n, items_per_panel=bars, notes={"true_class_missing": missed})


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def draw_neighbours(queries: list[np.ndarray], neighbours: list[list[np.ndarray]],
                    query_labels: list[str] | None = None, neighbour_labels: list[list[str]] | None = None):
    """Figure 4 (right): per row a query image (framed red), then its nearest training images; titled if labelled."""
    plt = pyplot()
    rows = len(queries)
    cols = 1 + max(len(row) for row in neighbours)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.4), squeeze=False)
    for r in range(rows):
        axes[r, 0].imshow(queries[r])
        axes[r, 0].set_title(_short(query_labels[r], 14) if query_labels else "query", fontsize=7)
        for c, image in enumerate(neighbours[r], start=1):
            axes[r, c].imshow(image)
            if neighbour_labels:
                axes[r, c].set_title(_short(neighbour_labels[r][c - 1], 14), fontsize=7)
        for ax in axes[r]:
            ax.set(xticks=[], yticks=[])
        for spine in axes[r, 0].spines.values():
            spine.set(edgecolor="tab:red", linewidth=2)
        for ax in axes[r, 1 + len(neighbours[r]):]:
            ax.axis("off")
    fig.tight_layout()
    return fig, Layout(panels=rows, items_per_panel=[len(row) for row in neighbours])


def draw_curves(metrics: list[dict], classes: int | None = None):
    """Top-1 and top-5 error per epoch of metrics.jsonl's rows, dotted lines at learning-rate divisions (section
    5), dash-dotted at chance given ``classes``; 0-100%, so that a run that learns nothing reads as flat."""
    from matplotlib.ticker import MaxNLocator
    plt = pyplot()
    epochs = [m["epoch"] for m in metrics]
    reductions = lr_reductions(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    lines = []
    for ax, k in zip(axes, (1, 5)):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_top{k}_error"
            points = [(e, m[key]) for e, m in zip(epochs, metrics) if m.get(key) is not None]
            if points:
                ax.plot(*zip(*points), style, marker=".", label=f"{split}")
                lines.append(key)
        for epoch in reductions:
            ax.axvline(epoch, color="grey", linestyle=":", linewidth=1)
        if classes:
            chance = chance_error(classes, k)
            ax.axhline(chance, color="black", linestyle="-.", linewidth=1,
                       label=f"chance ({chance:.1f}%, {classes} classes)")
        if len(set(epochs)) == 1:  # else matplotlib spans a hair around the one epoch, in fractions
            ax.set(xlim=(epochs[0] - 0.5, epochs[0] + 0.5), xticks=epochs[:1])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(ylim=(0, 100), xlabel="epoch", ylabel=f"top-{k} error (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if reductions:
        axes[0].set_title("dotted: learning rate divided", fontsize=8)
    fig.tight_layout()
    return fig, Layout(panels=2, items_per_panel=[len(lines) // 2] * 2, notes={"lr_reductions": reductions})


def lr_reductions(metrics: list[dict]) -> list[int]:
    """The epochs whose learning rate is divided: at most a fifth of the previous epoch's, and not 0
    (a cosine schedule's rate falls by less than a factor 4 an epoch until its last epoch's 0)."""
    return [b["epoch"] for a, b in zip(metrics, metrics[1:])
            if a.get("lr") is not None and b.get("lr") is not None and 0 < b["lr"] <= a["lr"] / 5]
