"""Table 3, Figure 1 and the claims of the proxy-bias experiment, rendered from the cached units
alone (``experiments.proxy_bias`` computes them)."""

import itertools
import pathlib

import numpy as np

from experiments.harness import claims, plots, report
from experiments.harness.paper_values import paper_value
from gnuq import problems, stats


def unit_statistics(a: dict) -> dict[str, float]:
    upper = a["grid_top"]
    ratios = {m: float(a[f"U_{m}"][upper].mean() / a[f"U_{m}"][~upper].mean()) for m in "IAB"}
    log_ratio = np.log(a["U_A"] / a["U_B"])
    t, p, d = stats.welch(log_ratio[upper], log_ratio[~upper])
    return ratios | {
        "t": t,
        "p": p,
        "d": d,
        "median_log_ratio_top": float(np.median(log_ratio[upper])),
        "median_log_ratio_bottom": float(np.median(log_ratio[~upper])),
    }


def records_of(name: str, seed: int, a: dict) -> list[dict]:
    s = unit_statistics(a)
    base = {
        "problem": name,
        "model": f"MLP({int(a['n_params'])} parameters)",
        "n_params": int(a["n_params"]),
        "class": "overall",
        "seed": seed,
    }
    out = [base | {"quantity": "symmetry_ratio", "method": m, "value": s[m]} for m in "IAB"]
    out.append(
        base
        | {
            "quantity": "log_ratio_test",
            "method": "A-vs-B",
            "t": s["t"],
            "p": s["p"],
            "cohens_d": s["d"],
            "median_log_ratio_top": s["median_log_ratio_top"],
            "median_log_ratio_bottom": s["median_log_ratio_bottom"],
        }
    )
    return out


def render(cfg, profile: str, units: dict, out: pathlib.Path) -> list[str]:
    records = [r for (name, seed), a in units.items() for r in records_of(name, seed, a)]
    report.write_results(out, "proxy_bias", profile, cfg, records, [])

    body = []
    summary = {}
    for name, label in zip(cfg.problems, cfg.labels, strict=True):
        row = [label]
        for m in "IAB":
            vals = [
                r["value"]
                for r in records
                if r["problem"] == name and r["quantity"] == "symmetry_ratio" and r["method"] == m
            ]
            summary[(name, m)] = float(np.mean(vals))
            paper = paper_value("proxy_bias", name, "symmetry_ratio", m, "overall")
            row += [report.spread_cell(vals), "—" if paper is None else f"{paper[0]:.2f}"]
        tests = [r for r in records if r["problem"] == name and r["quantity"] == "log_ratio_test"]
        summary[(name, "p")] = max(r["p"] for r in tests)
        summary[(name, "d")] = float(np.mean([r["cohens_d"] for r in tests]))
        row += [
            report.spread_cell([r["t"] for r in tests], "{:.1f}"),
            report.p_value_cell(max(r["p"] for r in tests)),
            report.spread_cell([r["cohens_d"] for r in tests]),
        ]
        body.append(row)
    header = [
        "problem",
        "ratio I",
        "paper",
        "ratio A",
        "paper",
        "ratio B",
        "paper",
        "Welch t",
        "max p",
        "Cohen's d",
    ]
    seeds = f"{len(cfg.seeds)} seeds: mean [min, max]"
    report.write_table(
        out,
        "table3",
        report.rows_table(
            header,
            body,
            f"Proxy bias: top/bottom symmetry ratio of U_I = ||g||^2, U_A (Fisher of the top half) "
            f"and U_B (bottom half); Welch test of log(U_A/U_B) between the grid's halves "
            f"({profile} profile, {seeds}); 'paper' columns are the paper's values",
        ),
    )
    claims = check_claims(cfg, summary, records)
    (out / "claims.md").write_text("\n".join(claims) + "\n")
    first = cfg.seeds[0]
    for name, label in zip(cfg.problems, cfg.labels, strict=True):
        a = units[(name, first)]
        s = unit_statistics(a)
        panels = [
            [
                (f"U_I = ||g||²  ratio {s['I']:.2f}", a["U_I"]),
                (f"U_A (top-half Fisher)  ratio {s['A']:.2f}", a["U_A"]),
                (f"U_B (bottom-half Fisher)  ratio {s['B']:.2f}", a["U_B"]),
                (f"log(U_A/U_B)  d={s['d']:.1f}", np.log(a["U_A"] / a["U_B"]), "diverging"),
            ]
        ]
        plots.maps_figure(
            out / f"maps_{name}",
            panels,
            cfg.grid_resolution,
            problems.get(name).box,
            a["x"],
            a["top"].astype(int),
            f"{label}: epistemic under proxy Hessians, seed {first}",
            point_labels={0: "bottom half", 1: "top half"},
        )
    return claims


def check_claims(cfg, s: dict, records: list[dict]) -> list[str]:
    """The paper's proxy-bias claims. The ratios' claims are decided against the 95% interval
    of a seed mean (``gnuq.stats.seed_interval``; undecidable with one seed) on the log scale,
    where a ratio and its inverse are equally far from 1."""
    lines = [
        "# Claims tested by the proxy-bias experiment",
        "",
        "Decided against the 95% interval of the mean over seeds (t interval): holds, fails or "
        "inconclusive (the interval straddles the threshold).",
        "",
    ]
    names = cfg.problems

    def logs(name: str, method: str) -> np.ndarray:
        rows = [
            r
            for r in records
            if (r["problem"], r["quantity"], r["method"]) == (name, "symmetry_ratio", method)
        ]
        return np.log([r["value"] for r in sorted(rows, key=lambda r: r["seed"])])

    def interval(values: np.ndarray) -> tuple[float, float]:
        if len(values) < 2:
            return (-np.inf, np.inf)  # one seed: no interval, every claim inconclusive
        return stats.seed_interval(values, level=0.95, clip=False)

    def paper(name: str, m: str) -> float:
        return paper_value("proxy_bias", name, "symmetry_ratio", m, "overall")[0]

    # the paper's claim as its own Table 3 reads: the identity is closer to 1 than either proxy
    verdicts, evidence = [], []
    for n in names:
        margin = np.minimum(abs(logs(n, "A")), abs(logs(n, "B"))) - abs(logs(n, "I"))
        lo, hi = interval(margin)
        verdicts.append(claims.decide((lo, hi), 0.0))
        p_margin = min(abs(np.log(paper(n, "A"))), abs(np.log(paper(n, "B"))))
        p_margin -= abs(np.log(paper(n, "I")))
        evidence.append(f"{n}: {margin.mean():+.2f} [{lo:+.2f}, {hi:+.2f}], paper {p_margin:+.2f}")
    lines.append(
        claims.line(
            claims.combine(verdicts),
            "the identity keeps the symmetry ratio nearer 1 than either proxy on every problem "
            "(min(|log A|, |log B|) − |log I| > 0)",
            "; ".join(evidence),
        )
    )
    # the stricter reading tested before: within 0.2 of 1 (the paper's own XOR, 1.45, fails it)
    verdicts, evidence = [], []
    for n in names:
        lo, hi = interval(abs(logs(n, "I")))
        verdicts.append(claims.decide((lo, hi), np.log(1.2), at_least=False))
        evidence.append(f"{n}: ratio {s[(n, 'I')]:.2f}, paper {paper(n, 'I'):.2f}")
    lines.append(
        claims.line(
            claims.combine(verdicts),
            "ours, a stricter reading: the identity's ratio within a factor 1.2 of 1 on every "
            "problem (|log I| ≤ log 1.2; the paper's own XOR, 1.45, does not meet it)",
            "; ".join(evidence),
        )
    )
    verdicts, evidence = [], []
    for n in names:
        (a_lo, a_hi), (b_lo, b_hi) = interval(logs(n, "A")), interval(logs(n, "B"))
        apart = (a_hi < 0 < b_lo) or (b_hi < 0 < a_lo)
        together = (a_lo > 0 and b_lo > 0) or (a_hi < 0 and b_hi < 0)
        verdicts.append(
            claims.HOLDS if apart else claims.FAILS if together else claims.INCONCLUSIVE
        )
        evidence.append(f"{n}: log A [{a_lo:+.2f}, {a_hi:+.2f}], log B [{b_lo:+.2f}, {b_hi:+.2f}]")
    lines.append(
        claims.line(
            claims.combine(verdicts),
            "the two proxies push the ratio in opposite directions on every problem (the "
            "intervals of log A and log B lie on opposite sides of 0)",
            "; ".join(evidence),
        )
    )
    spread = {n: abs(logs(n, "B") - logs(n, "A")) for n in names}
    verdicts, evidence = [], []
    for a, b in itertools.pairwise(names):
        diff = spread[b] - spread[a][: len(spread[b])]
        lo, hi = interval(diff)
        verdicts.append(claims.decide((lo, hi), 0.0))
        evidence.append(f"{b} − {a}: {diff.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]")
    lines.append(
        claims.line(
            claims.combine(verdicts),
            f"the distortion |log(ratio_B / ratio_A)| grows with boundary complexity "
            f"({' < '.join(names)}; each step's difference > 0, seeds paired by index)",
            "; ".join(evidence),
        )
    )
    worst = max(s[(n, "p")] for n in names)
    lines.append(
        claims.line(
            claims.HOLDS if worst < 1e-3 else claims.FAILS,
            "the log ratio differs between the halves with p < 0.001 on every problem and seed "
            "(descriptive: grid cells are not independent samples; Cohen's d and its sign carry "
            "the evidence)",
            f"largest p = {report.p_value_cell(worst)}",
        )
    )
    return lines
