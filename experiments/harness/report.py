"""Results files and tables: everything rendered from ``results.json`` (maps: ``plots``).

- ``write_results``: the results contract of DESIGN.md, written atomically.
- ``correlation_table``: Markdown and LaTeX, our "mean [95% interval]" across seeds, on the data
  region and the whole box, beside the paper's value (``paper_values``) in its own column.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from experiments.harness.agreement import (
    DIAGNOSTIC_FIELDS,
    PAPER_REFERENCE,
    REGIONS,
    ROBUST_REFERENCE,
)
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
    """Markdown and LaTeX tables: per row, once per evaluation region (the training data's
    bounding box, then the whole box), and per method, our Pearson r and Spearman rho against
    the paper-protocol reference as "mean [95% interval]" over seeds (``interval_cell``), each
    followed by the paper's value ("—" where it has none). Records of the robust reference are
    left out (``robust_table``)."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        if rec["quantity"] == quantity and ROBUST_REFERENCE not in (
            rec["reference"],
            rec["method"],
        ):
            cells[(rec["problem"], rec["method"], rec["class"], rec["region"])].append(rec)
    header = ["problem", "region"]
    for method in methods:
        header += [f"{method} r", "paper", f"{method} ρ", "paper"]
    body = []
    for problem, label, klass in rows:
        for region in REGIONS:
            line = [label, region]
            for method in methods:
                ours = cells.get((problem, method, klass, region), [])
                paper = paper_value(experiment, problem, quantity, method, klass)
                for stat, name in enumerate(("pearson", "spearman")):
                    line.append(interval_cell(ours, name))
                    line.append("—" if paper is None else f"{paper[stat]:.2f}")
            body.append(line)
    caption += (
        f". Each cell: the mean over seeds [95% interval]; {INTERVAL_NOTE}. Region 'data': grid "
        "cells inside the training data's bounding box; 'box': the whole evaluation grid"
    )
    return _markdown(header, body, caption), _latex(header, body, caption)


INTERVAL_NOTE = (
    "with several seeds the interval is the mean +- t s / sqrt(n) over seeds (it covers the "
    "data, the MAP and the Monte Carlo error); with one seed, that seed's two-way block "
    "bootstrap (spatial blocks of the grid: 8 x 8 tiles of a plane, 16 segments of a line; x "
    "blocks of consecutive posterior draws, mcmc.moment_blocks per chain)"
)


def interval_cell(records: Sequence[dict], stat: str, fmt: str = "{:.2f}") -> str:
    """ "mean [low, high]" of ``records``' ``stat`` over seeds (``gnuq.stats.seed_interval``;
    one seed: its own ``<stat>_ci``); "—" for none."""
    if not records:
        return "—"
    values = [r[stat] for r in records]
    lo, hi = stats.seed_interval(values, records[0].get(f"{stat}_ci"))
    f = fmt.format
    return f"{f(float(np.mean(values)))} [{f(lo)}, {f(hi)}]"


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


def model_name(widths: Sequence[int]) -> str:
    """How records and tables name a model: ``GLM`` (no hidden layer) or ``MLP(16,16)``."""
    return "MLP" + str(tuple(widths)).replace(" ", "").replace(",)", ")") if widths else "GLM"


def diagnostics_row(base: dict, arrays: dict, reference: str = "") -> dict:
    """One row of the results' ``diagnostics`` table (DESIGN.md) from a unit's arrays, for its
    reference posterior or the one named ``reference`` (``diagnostic_arrays``), with the Monte
    Carlo error of its maps where the unit measured it (``agreement._mcse``)."""
    row = dict(base)
    prefix = f"diagnostics/{reference}/" if reference else "diagnostics/"
    for k in DIAGNOSTIC_FIELDS:
        v = arrays[prefix + k]
        row[k] = bool(v) if k == "ok" else int(v) if k == "divergences" else float(v)
    row["reference"] = reference or PAPER_REFERENCE
    for quantity in ("epistemic", "aleatoric"):
        mcse = arrays.get(f"mcse/{row['reference']}/{quantity}")
        if mcse is not None:
            row[f"mcse_relative_{quantity}"] = float(mcse[0])
            row[f"mc_noise_share_{quantity}"] = float(mcse[1])
    return row


def diagnostics_rows(base: dict, arrays: dict) -> list[dict]:
    """The rows of every reference posterior a unit sampled."""
    rows = [diagnostics_row(base, arrays)]
    if f"diagnostics/{ROBUST_REFERENCE}/ok" in arrays:
        rows.append(diagnostics_row(base, arrays, ROBUST_REFERENCE))
    return rows


def diagnostics_table(diagnostics: Sequence[dict], mcmc) -> tuple[str, str]:
    """The reference diagnostics of every unit, with the gate's thresholds in the caption."""

    def mc(d: dict, key: str, fmt: str) -> str:
        return fmt.format(d[key]) if key in d else "—"

    body = [
        [
            d["problem"],
            d["model"],
            d["seed"],
            d.get("reference", PAPER_REFERENCE),
            f"{d['rhat_max_predictive']:.3f}",
            f"{d['ess_bulk_min_predictive']:.0f}",
            f"{d['rhat_max_params']:.3f}",
            f"{d['ess_bulk_min_params']:.0f}",
            d["divergences"],
            "ok" if d["ok"] else "**failed**",
            mc(d, "mcse_relative_epistemic", "{:.3f}"),
            mc(d, "mc_noise_share_epistemic", "{:.1e}"),
        ]
        for d in diagnostics
    ]
    header = [
        "problem",
        "model",
        "seed",
        "reference",
        "R-hat (predictions)",
        "ESS (predictions)",
        "R-hat (parameters)",
        "ESS (parameters)",
        "divergences",
        "gate",
        "MC se / variance (median cell)",
        "MC noise share of the map",
    ]
    return rows_table(
        header,
        body,
        f"NUTS reference diagnostics (gate on the {mcmc.gate} quantities: R-hat <= "
        f"{mcmc.max_rhat}, bulk ESS >= {mcmc.min_ess:.0f}, divergences <= "
        f"{mcmc.max_divergences}). '{ROBUST_REFERENCE}': chain i starts at the MAP of its own "
        "initialisation, so its R-hat is the between-start diagnostic. Monte Carlo error of "
        "the epistemic map (block bootstrap over draws): the standard error relative to the "
        "reference variance in the median cell, and mean se^2 / the variance of the map over "
        "cells (the share of the map's spread that is noise)",
    )


def robust_table(
    records: Sequence[dict], quantity: str, rows: Sequence[Row], profile: str
) -> tuple[str, str] | None:
    """Each method against both references, and the references against each other, on the
    seeds that have both (None when no unit has the robust reference)."""
    robust = [
        r for r in records if r["quantity"] == quantity and r["reference"] == ROBUST_REFERENCE
    ]
    if not robust:
        return None
    seeds = {(r["problem"], r["seed"]) for r in robust}
    methods = list(dict.fromkeys(r["method"] for r in robust))
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        if rec["quantity"] == quantity and (rec["problem"], rec["seed"]) in seeds:
            key = (rec["problem"], rec["class"], rec["region"], rec["reference"], rec["method"])
            cells[key].append(rec)
    header = ["problem", "region", f"{ROBUST_REFERENCE} vs {PAPER_REFERENCE} r", "ρ"]
    for m in methods:
        header += [f"{m} r (MAP ref)", f"{m} r (robust ref)", "ρ (MAP ref)", "ρ (robust ref)"]
    body = []
    for problem, label, klass in rows:
        if not any(p == problem for p, _ in seeds):
            continue
        for region in REGIONS:
            agree = cells.get((problem, klass, region, PAPER_REFERENCE, ROBUST_REFERENCE), [])
            line = [
                label,
                region,
                interval_cell(agree, "pearson"),
                interval_cell(agree, "spearman"),
            ]
            for m in methods:
                paper = cells.get((problem, klass, region, PAPER_REFERENCE, m), [])
                ours = cells.get((problem, klass, region, ROBUST_REFERENCE, m), [])
                for stat in ("pearson", "spearman"):
                    line += [interval_cell(paper, stat), interval_cell(ours, stat)]
            body.append(line)
    caption = (
        f"{quantity}: the paper's reference (every chain starts at the MAP) against ours (chain "
        f"i starts at the MAP of initialisation i), and each method against both, on the seeds "
        f"that have both ({profile} profile). Each cell: mean [95% interval]; {INTERVAL_NOTE}"
    )
    return rows_table(header, body, caption)
