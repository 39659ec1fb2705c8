"""Figures rendered from results: uncertainty maps over a 2D grid with the training data and
the data region (``maps_figure``), saved as PNG and a timestamp-free PDF (``save_figure``)."""

import pathlib
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

PDF_METADATA = {"CreationDate": None}  # no timestamp: a rerun writes byte-identical PDFs


def normalise(values) -> np.ndarray:
    """Scale a map to [0, 1] (min-max), as the paper's maps are."""
    v = np.asarray(values, np.float64)
    span = np.ptp(v)
    return np.zeros_like(v) if span == 0 else (v - v.min()) / span


DOTS = {"s": 3, "edgecolors": "white", "linewidths": 0.2, "alpha": 0.7}  # training points
REGION_EDGE = {"linestyle": "--", "linewidth": 0.7, "edgecolor": "white"}  # the data region


def maps_figure(
    path_stem: pathlib.Path,
    panels: Sequence[Sequence[tuple]],
    resolution: int,
    box: tuple[tuple[float, float], ...],
    train_x: np.ndarray,
    train_y: np.ndarray,
    title: str,
    log: bool = False,
    point_labels: dict | None = None,
) -> None:
    """A grid of panels over a 2D grid, the training points overlaid (one colour per value of
    ``train_y``, named in the legend as ``point_labels`` says, default "class c") and the data
    region (their bounding box) dashed.

    Each panel is ``(title, values [resolution**2])``, normalised to [0, 1] on one shared colour
    scale (of log10 of the values with ``log``, floored at 1e-6 of each map's maximum, so the
    far field's ordering that decides Spearman's rho shows), or ``(title, values,
    "diverging")``: raw values on a symmetric red-blue scale with a colour bar of its own (for
    signed quantities such as a log ratio, labelled by the title). PNG and PDF.
    """
    n_rows, n_cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(2.3 * n_cols + 1.0, 2.3 * n_rows + 0.8),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    extent = (box[0][0], box[0][1], box[1][0], box[1][1])
    lo_x, hi_x = train_x.min(0), train_x.max(0)
    classes = np.unique(train_y)
    colours = plt.get_cmap("tab10")

    def name_of(c) -> str:
        return (point_labels or {}).get(int(c), f"class {c}")

    point_colours = colours(np.searchsorted(classes, train_y) % 10)
    handles = [
        plt.Line2D([], [], linestyle="", marker="o", markersize=1.7, color=colours(k % 10),
                   label=name_of(c))
        for k, c in enumerate(classes)
    ]  # fmt: skip

    image, normalised_axes = None, []
    for i, row in enumerate(panels):
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(row):
                ax.axis("off")
                continue
            name, values, *kind = row[j]
            diverging = kind == ["diverging"]
            if diverging:
                limit = float(np.max(np.abs(values))) or 1.0
                shown, cmap, lo, hi = np.asarray(values), "RdBu_r", -limit, limit
            elif log:
                v = np.asarray(values, np.float64)
                floor = max(float(v.max()), 1e-300) * 1e-6
                shown, cmap, lo, hi = normalise(np.log10(np.maximum(v, floor))), "viridis", 0, 1
            else:
                shown, cmap, lo, hi = normalise(values), "viridis", 0, 1
            im = ax.imshow(
                shown.reshape(resolution, resolution),
                origin="lower",
                extent=extent,
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                aspect="equal",
            )
            if diverging:
                fig.colorbar(im, ax=ax, shrink=0.8, label=name)
            else:
                image = im
                normalised_axes.append(ax)
            ax.scatter(*train_x.T[:2], color=point_colours, **DOTS)  # one artist per panel
            corner, size = (lo_x[0], lo_x[1]), (hi_x[0] - lo_x[0], hi_x[1] - lo_x[1])
            ax.add_patch(plt.Rectangle(corner, *size, fill=False, **REGION_EDGE))
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
            ax.set_xticks(np.linspace(*extent[:2], 3))
            ax.set_yticks(np.linspace(*extent[2:], 3))
            ax.tick_params(labelsize=6, length=2)
            ax.set_title(name, fontsize=8)
            ax.label_outer()  # one box for every panel: its ticks on the outer panels only
    fig.suptitle(title, fontsize=10)
    fig.legend(
        handles=[*handles, plt.Line2D([], [], linestyle="--", color="grey", label="data region")],
        loc="outside lower center", ncol=len(handles) + 1, fontsize=7, markerscale=3,
    )  # fmt: skip
    if image is not None:
        where = "bottom" if len(normalised_axes) < n_rows * n_cols else "right"
        label = "normalised log10 uncertainty" if log else "normalised uncertainty"
        fig.colorbar(image, ax=normalised_axes, shrink=0.6, location=where, label=label)
    save_figure(fig, path_stem)


def save_figure(fig, stem: pathlib.Path) -> None:
    """``stem``.png and ``stem``.pdf (no timestamp in the PDF), then close the figure."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    fig.set_layout_engine("none")  # the PDF keeps the layout the PNG computed: one pass, not two
    fig.savefig(stem.with_suffix(".pdf"), metadata=PDF_METADATA)
    plt.close(fig)
