"""Tables 5, 6 and 8, the uncertainty maps and the claims of the classification experiments,
rendered from the cached units alone (``experiments.classification`` computes them)."""

import pathlib

import numpy as np

from experiments.harness import methods, report
from gnuq import problems, stats

TABLES = {
    "binary": {"epistemic": "table5", "aleatoric": "table6"},
    "multiclass": {"epistemic": "table8_epistemic", "aleatoric": "table8_aleatoric"},
}


def render(cfg, profile: str, units: dict, out: pathlib.Path) -> list[str]:
    """Tables, figures and claims from the cached units; returns the claims' lines."""
    specs = {s.name: s for s in cfg.problems}
    records, diagnostics = [], []
    for (name, seed), a in units.items():
        spec = specs[name]
        base = {
            "problem": name,
            "model": report.model_name(spec.widths),
            "n_params": int(a["n_params"]),
            "seed": seed,
        }
        records += methods.records(_task(spec), a, base)
        diagnostics.append(
            report.diagnostics_row({k: base[k] for k in ("problem", "model", "seed")}, a)
        )
    report.write_results(out, cfg.experiment, profile, cfg, records, diagnostics)

    seeds = f"{len(cfg.seeds)} seed{'s' * (len(cfg.seeds) > 1)}"
    for quantity, table in TABLES[cfg.experiment].items():
        columns = []
        for spec in cfg.problems:  # every method that applies to one of the problems
            columns += [m for m in methods.table_columns(_task(spec), quantity) if m not in columns]
        caption = (
            f"{cfg.experiment} {quantity} uncertainty vs the NUTS reference ({profile} profile, "
            f"{seeds}: mean [min, max]); 'paper' columns are the paper's values"
        )
        report.write_table(
            out,
            table,
            report.correlation_table(
                records,
                experiment=cfg.experiment,
                quantity=quantity,
                methods=columns,
                rows=_rows(cfg, units),
                caption=caption,
            ),
        )
    report.write_table(out, "diagnostics", report.diagnostics_table(diagnostics, cfg.mcmc))
    claims = check_claims(cfg, records, units)
    (out / "claims.md").write_text("\n".join(claims) + "\n")

    first = cfg.seeds[0]
    for spec in cfg.problems:
        draw_maps(cfg, spec, units[(spec.name, first)], first, out)
    return claims


def _task(spec) -> str:
    return problems.get(spec.name, **spec.options).task


def _num_classes(units: dict, name: str) -> int:
    a = next(a for (n, _), a in units.items() if n == name)
    return a["reference/epistemic"].shape[1]


def _rows(cfg, units: dict) -> list[tuple[str, str, object]]:
    """One row per problem; for several classes one per class, then the pooled one."""
    rows = []
    for s in cfg.problems:
        k = _num_classes(units, s.name)
        if k == 1:
            rows.append((s.name, s.label, "overall"))
        else:
            rows += [(s.name, f"{s.label} {c}", c) for c in (*range(k), "overall")]
    return rows


def _mean(records, problem, quantity, method, klass, stat) -> float:
    values = [
        r[stat]
        for r in records
        if (r["problem"], r["quantity"], r["method"], r["class"])
        == (problem, quantity, method, klass)
    ]
    return float(np.mean(values))


def check_claims(cfg, records: list[dict], units: dict) -> list[str]:
    """The paper's qualitative claims these tables test, marked from our numbers (seed means)."""
    lines = [f"# Claims tested by the {cfg.experiment} experiment", ""]

    def claim(text: str, holds: bool, evidence: str) -> None:
        lines.append(f"- **{'holds' if holds else 'fails'}**: {text} ({evidence})")

    names = [s.name for s in cfg.problems]
    if cfg.experiment == "binary":
        if "linear" in names:
            r = _mean(records, "linear", "epistemic", "GN", "overall", "pearson")
            rho = _mean(records, "linear", "epistemic", "GN", "overall", "spearman")
            claim(
                "on the correctly specified linear problem GN tracks MCMC (r and ρ >= 0.9)",
                r >= 0.9 and rho >= 0.9,
                f"r = {r:.2f}, ρ = {rho:.2f}",
            )
        worst = min(
            min(
                _mean(records, n, "epistemic", "GN-vs-LA", "overall", s)
                for s in ("pearson", "spearman")
            )
            for n in names
        )
        claim(
            "LA adds little over GN: GN vs LA >= 0.9 (r and ρ) on every binary problem",
            worst >= 0.9,
            f"smallest = {worst:.2f}",
        )
    else:
        worst = min(
            min(_mean(records, n, "aleatoric", "PE", "overall", s) for s in ("pearson", "spearman"))
            for n in names
        )
        claim(
            "the point-estimate aleatoric tracks MCMC on every 4-class problem (>= 0.9)",
            worst >= 0.9,
            f"smallest overall r or ρ = {worst:.2f}",
        )
        spans = {
            n: max(
                np.ptp(
                    [
                        _mean(records, n, "epistemic", "GN", k, s)
                        for k in range(_num_classes(units, n))
                    ]
                )
                for s in ("pearson", "spearman")
            )
            for n in names
            if _num_classes(units, n) > 1
        }
        claim(
            "per-class GN correlations are consistent within each problem (range <= 0.15)",
            max(spans.values()) <= 0.15,
            ", ".join(f"{n}: {v:.2f}" for n, v in spans.items()),
        )
    return lines


def draw_maps(cfg, spec, a: dict, seed: int, out: pathlib.Path) -> None:
    """Per class: the reference and every method, epistemic then aleatoric, normalised."""
    problem = problems.get(spec.name, **spec.options)

    def panel(name, est, ref):
        if ref is None:
            return (name, est)
        r, rho = stats.correlations(est, ref)
        return (f"{name}  r={r:.2f} ρ={rho:.2f}", est)

    n_classes = a["reference/epistemic"].shape[1]
    rows = []
    for k in range(n_classes):
        tag = "" if n_classes == 1 else f" c{k}"
        for quantity, short in (("epistemic", "epi"), ("aleatoric", "ale")):
            ref = a[f"reference/{quantity}"][:, k]
            row = [panel(f"MCMC {short}{tag}", ref, None)]
            for m in methods.applicable(problem.task, quantity):
                label = m.name if m.point or quantity == "epistemic" else f"{m.name} {short}"
                row.append(panel(f"{label}{tag}", a[m.array][:, k], ref))
            rows.append(row)
    if n_classes > 1:  # one row per class: epistemic and aleatoric side by side
        rows = [rows[i] + rows[i + 1] for i in range(0, len(rows), 2)]
    report.maps_figure(
        out / f"maps_{spec.name}",
        rows,
        cfg.grid_resolution,
        problem.box,
        a["x"],
        a["y"],
        f"{spec.label}: normalised uncertainty, seed {seed} (reference: NUTS, "
        f"{'ok' if bool(a['diagnostics/ok']) else 'gate FAILED'})",
    )
