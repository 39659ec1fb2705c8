"""Results files, tables and uncertainty maps: everything rendered from ``results.json``.

- ``write_results``: the results contract of DESIGN.md, written atomically.
- ``correlation_table``: Markdown and LaTeX, our "mean [min, max]" across seeds beside the
  paper's value (from ``gnuq.paper_values``) in its own column.
- ``maps_figure``: panels of [0, 1]-normalised maps over a 2D grid with the training data.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
from collections import defaultdict
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from experiments.harness.paper_values import paper_value
from gnuq import stats


def git_commit() -> str:
    """The checked-out commit, with ``-dirty`` when tracked files outside ``figures/`` differ
    from it (outputs, e.g. records a background run is appending to, do not change the code)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", ".", ":(exclude)figures"], capture_output=True
        ).returncode
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json(path: pathlib.Path, data) -> None:
    """Write JSON to ``path`` atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, path)


def write_results(
    directory: pathlib.Path,
    experiment: str,
    profile: str,
    config,
    records: list[dict],
    diagnostics: list[dict],
    extra: dict | None = None,
) -> pathlib.Path:
    """``results.json`` per the results contract (plus any ``extra`` top-level keys)."""
    path = pathlib.Path(directory) / "results.json"
    write_json(
        path,
        {
            "experiment": experiment,
            "profile": profile,
            "config": config,
            "git_commit": git_commit(),
            "records": records,
            "diagnostics": diagnostics,
        }
        | (extra or {}),
    )
    return path


def _jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------------
# tables

Row = tuple[str, str, object]  # (problem, label shown, class)


def correlation_table(
    records: Sequence[dict],
    *,
    experiment: str,
    quantity: str,
    methods: Sequence[str],
    rows: Sequence[Row],
    caption: str,
) -> tuple[str, str]:
    """Markdown and LaTeX tables: per row and method, our Pearson r and Spearman rho as
    "mean [min, max]" over seeds, each followed by the paper's value ("—" where it has none)."""
    cells: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for rec in records:
        if rec["quantity"] == quantity:
            key = (rec["problem"], rec["method"], rec["class"])
            cells[key].append((rec["pearson"], rec["spearman"]))
    header = ["problem"]
    for method in methods:
        header += [f"{method} r", "paper", f"{method} ρ", "paper"]
    body = []
    for problem, label, klass in rows:
        line = [label]
        for method in methods:
            ours = cells.get((problem, method, klass), [])
            paper = paper_value(experiment, problem, quantity, method, klass)
            for stat in (0, 1):
                line.append(spread_cell([v[stat] for v in ours]))
                line.append("—" if paper is None else f"{paper[stat]:.2f}")
        body.append(line)
    return _markdown(header, body, caption), _latex(header, body, caption)


def rows_table(header: Sequence[str], body: Sequence[Sequence], caption: str) -> tuple[str, str]:
    """Any table of pre-formatted cells, Markdown and LaTeX."""
    body = [[str(c) for c in row] for row in body]
    return _markdown(header, body, caption), _latex(header, body, caption)


def spread_cell(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """ "mean [min, max]" over seeds (just the value for one seed; "—" for none)."""
    if not values:
        return "—"
    mean, lo, hi = stats.spread(values)
    if len(values) == 1:
        return fmt.format(mean)
    return f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def p_value_cell(p: float) -> str:
    return "< 1e-300" if p == 0 else f"{p:.1e}"  # 0.0 is a float underflow, not a certainty


def _markdown(header, body, caption) -> str:
    lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _latex(header, body, caption) -> str:
    def esc(text: str) -> str:
        for a, b in [("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("ρ", r"$\rho$")]:
            text = text.replace(a, b)
        return text.replace("—", "--")

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{esc(caption)}}}",
        r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(esc(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(esc(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(directory: pathlib.Path, name: str, tables: tuple[str, str]) -> None:
    md, tex = tables
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.md").write_text(md)
    (directory / f"{name}.tex").write_text(tex)


# ---------------------------------------------------------------------------------------------
# figures

PDF_METADATA = {"CreationDate": None}  # no timestamp: a rerun writes byte-identical PDFs


def normalise(values) -> np.ndarray:
    """Scale a map to [0, 1] (min-max), as the paper's maps are."""
    v = np.asarray(values, np.float64)
    span = np.ptp(v)
    return np.zeros_like(v) if span == 0 else (v - v.min()) / span


def maps_figure(
    path_stem: pathlib.Path,
    panels: Sequence[Sequence[tuple]],
    resolution: int,
    box: tuple[tuple[float, float], ...],
    train_x: np.ndarray,
    train_y: np.ndarray,
    title: str,
) -> None:
    """A grid of panels over a 2D grid, the training points overlaid (coloured by ``train_y``).

    Each panel is ``(title, values [resolution**2])``, normalised to [0, 1] on one shared colour
    scale, or ``(title, values, "diverging")``: raw values on a symmetric red-blue scale with a
    colour bar of its own (for signed quantities such as a log ratio). PNG and PDF.
    """
    n_rows, n_cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(2.3 * n_cols + 1.0, 2.3 * n_rows + 0.5),
        squeeze=False,
        layout="constrained",
    )
    extent = (box[0][0], box[0][1], box[1][0], box[1][1])
    image, normalised_axes = None, []
    for i, row in enumerate(panels):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(row):
                ax.axis("off")
                continue
            name, values, *kind = row[j]
            diverging = kind == ["diverging"]
            if diverging:
                limit = float(np.max(np.abs(values))) or 1.0
                shown, cmap, lo, hi = np.asarray(values), "RdBu_r", -limit, limit
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
                fig.colorbar(im, ax=ax, shrink=0.8)
            else:
                image = im
                normalised_axes.append(ax)
            ax.scatter(
                train_x[:, 0],
                train_x[:, 1],
                c=train_y,
                s=3,
                cmap="coolwarm",
                edgecolors="white",
                linewidths=0.2,
                alpha=0.6,
            )
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
            ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    if image is not None:
        where = "bottom" if len(normalised_axes) < n_rows * n_cols else "right"
        fig.colorbar(
            image, ax=normalised_axes, shrink=0.6, location=where, label="normalised uncertainty"
        )
    save_figure(fig, path_stem)


def save_figure(fig, stem: pathlib.Path) -> None:
    """``stem``.png and ``stem``.pdf (no timestamp in the PDF), then close the figure."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    fig.savefig(stem.with_suffix(".pdf"), metadata=PDF_METADATA)
    plt.close(fig)


def model_name(widths: Sequence[int]) -> str:
    """How records and tables name a model: ``GLM`` (no hidden layer) or ``MLP(16,16)``."""
    return "MLP" + str(tuple(widths)).replace(" ", "").replace(",)", ")") if widths else "GLM"


def diagnostic_arrays(d) -> dict[str, np.ndarray]:
    """A reference's ``gnuq.mcmc.Diagnostics`` as unit arrays (``diagnostics_row`` reads them)."""
    return {f"diagnostics/{k}": np.asarray(getattr(d, k)) for k in DIAGNOSTIC_FIELDS}


DIAGNOSTIC_FIELDS = (
    "rhat_max",
    "ess_bulk_min",
    "divergences",
    "ok",
    "rhat_max_params",
    "ess_bulk_min_params",
    "rhat_max_predictive",
    "ess_bulk_min_predictive",
)


def diagnostics_row(base: dict, arrays: dict) -> dict:
    """One row of the results' ``diagnostics`` table (DESIGN.md) from a unit's arrays."""
    row = dict(base)
    for k in DIAGNOSTIC_FIELDS:
        v = arrays[f"diagnostics/{k}"]
        row[k] = bool(v) if k == "ok" else int(v) if k == "divergences" else float(v)
    return row


def diagnostics_table(diagnostics: Sequence[dict], mcmc) -> tuple[str, str]:
    """The reference diagnostics of every unit, with the gate's thresholds in the caption."""
    body = [
        [
            d["problem"],
            d["model"],
            d["seed"],
            f"{d['rhat_max_predictive']:.3f}",
            f"{d['ess_bulk_min_predictive']:.0f}",
            f"{d['rhat_max_params']:.3f}",
            f"{d['ess_bulk_min_params']:.0f}",
            d["divergences"],
            "ok" if d["ok"] else "**failed**",
        ]
        for d in diagnostics
    ]
    header = [
        "problem",
        "model",
        "seed",
        "R-hat (predictions)",
        "ESS (predictions)",
        "R-hat (parameters)",
        "ESS (parameters)",
        "divergences",
        "gate",
    ]
    return rows_table(
        header,
        body,
        f"NUTS reference diagnostics (gate on the {mcmc.gate} quantities: R-hat <= "
        f"{mcmc.max_rhat}, bulk ESS >= {mcmc.min_ess:.0f}, divergences <= "
        f"{mcmc.max_divergences})",
    )
