"""Table 1 and the gallery of one profile's results, beside the paper's.

- ``figures/<profile>/table1.md`` (and ``.tex``): the paper's summary table (binary, 4-class and
  regression; epistemic and aleatoric; Pearson r / Spearman rho), assembled from the
  experiments' ``results.json``, our "mean [95% interval]" over seeds on the data region and
  the whole box beside the paper's value;
- the gallery, ``figures/README.md`` for the quick profile (the page a reader of the repository
  sees) and ``figures/<profile>/README.md`` for the others: per experiment its run (commit, wall
  time), the reference diagnostics that pass the gate, the paper's claims marked holds / fails
  holds / fails / inconclusive with the evidence, every table and every figure.

Rendered from files only (results.json, the tables, claims.md, reproduce.json), so it never
recomputes anything. Run as ``python -m experiments.gallery --profile quick``.
"""

import argparse
import json
import pathlib
import sys
from collections import defaultdict

from experiments.harness import report
from experiments.harness.agreement import PAPER_REFERENCE, REGIONS
from experiments.harness.config import PROFILES
from experiments.harness.paper_values import paper_value

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAPER_ITEMS = {  # experiment -> what it regenerates, in `make reproduce` order
    "binary": "Tables 5, 6; Figures 5-8 (binary classification)",
    "multiclass": "Table 8; Figure 2 (4-class classification)",
    "regression": "Table 9; App. E figure (1D regression)",
    "proxy_bias": "Table 3; Figure 1 (proxy-Hessian bias)",
    "text_domains": "Table 4; Figure 4 (proxy bias with a text encoder)",
    "scaling": "Table 10; Figure 3 (parameter-count sweep)",
    "llm_qa": "Tables 2, 11-15 (LLM question answering)",
    "sensitivity": "not in the paper: the gap ledger (which open choice explains each gap)",
}
# run on their own (`python -m experiments.<name>`), not by `make reproduce`: the ledger's quick
# profile alone takes about 30 min, which would double the run; the gallery still shows them
SEPARATE_RUNS = ("sensitivity",)
TABLE1 = [  # (experiment, problem, label, quantity, method): the rows of the paper's Table 1
    *(
        ("binary", p, label, q, m)
        for p, label in (("linear", "Linear"), ("xor", "XOR"), ("rings", "Rings"))
        for q, m in (("epistemic", "GN"), ("epistemic", "LA"), ("aleatoric", "PE"))
    ),
    *(
        ("multiclass", p, label, q, m)
        for p, label in (("clusters", "Clusters"), ("spirals", "Spirals"), ("rings4", "Rings"))
        for q, m in (("epistemic", "GN"), ("aleatoric", "PE"))
    ),
    *(
        ("regression", p, label, "epistemic", m)
        for p, label in (("linear_1d", "Linear"), ("nonlinear_1d", "Nonlin."))
        for m in ("GN", "LA")
    ),
]
SETTINGS = {"binary": "binary", "multiclass": "4-class", "regression": "regression"}
VERDICTS = ("holds", "fails", "inconclusive", "untestable")


def profile_dir(root: pathlib.Path, profile: str) -> pathlib.Path:
    return root / "figures" / profile


def gallery_path(root: pathlib.Path, profile: str) -> pathlib.Path:
    """figures/README.md for quick (the repository's front page for results), else per profile."""
    return root / "figures" / ("README.md" if profile == "quick" else f"{profile}/README.md")


def load_results(root: pathlib.Path, profile: str) -> dict[str, dict]:
    """Every ``results.json`` of the profile, by experiment."""
    out = {}
    for path in sorted(profile_dir(root, profile).glob("*/results.json")):
        out[path.parent.name] = json.loads(path.read_text())
    return out


def table1(results: dict[str, dict], profile: str) -> tuple[str, str]:
    """The paper's Table 1 from the binary, multiclass and regression results (overall rows),
    against the paper-protocol reference, on the data region and the whole box."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for experiment in SETTINGS:
        for rec in results.get(experiment, {}).get("records", []):
            if rec["class"] == "overall" and rec["reference"] == PAPER_REFERENCE:
                key = (experiment, rec["problem"], rec["quantity"], rec["method"], rec["region"])
                cells[key].append(rec)
    body = []
    for experiment, problem, label, quantity, method in TABLE1:
        paper = paper_value(experiment, problem, quantity, method, "overall")
        line = [SETTINGS[experiment], label, f"{quantity} ({method})"]
        for i, stat in enumerate(("pearson", "spearman")):
            for region in REGIONS:
                line.append(
                    report.interval_cell(
                        cells.get((experiment, problem, quantity, method, region), []), stat
                    )
                )
            line.append("—" if paper is None else f"{paper[i]:.2f}")
        body.append(line)
    header = ["setting", "problem", "estimate"]
    for stat in ("r", "ρ"):
        header += [f"{stat} ({region})" for region in REGIONS] + [f"paper {stat}"]
    caption = (
        f"Table 1: correlation with the NUTS reference started at the MAP (the paper's "
        f"protocol), ours as mean [95% interval] over seeds ({profile} profile) on the data "
        f"region (the training data's bounding box) and on the whole evaluation box, beside "
        f"the paper's. GN: ‖∇θp‖²; LA: Laplace; PE: p(1 − p) at the MAP. {report.INTERVAL_NOTE}"
    )
    return report.rows_table(header, body, caption)


def _claims(directory: pathlib.Path) -> list[str]:
    path = directory / "claims.md"
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if not line.startswith("# ")]
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines


def _diagnostics(data: dict) -> str:
    rows = data.get("diagnostics") or []
    if not rows:
        return ""
    ok = sum(bool(r["ok"]) for r in rows)
    failed = [
        f"{r['problem']} {r['model']} seed {r['seed']}"
        + (f" ({r['reference']})" if r.get("reference", PAPER_REFERENCE) != PAPER_REFERENCE else "")
        for r in rows
        if not r["ok"]
    ]
    line = f"NUTS references passing the convergence gate: **{ok} of {len(rows)}**"
    return line + (f" (failed: {', '.join(failed)})" if failed else "")


def _tables(directory: pathlib.Path) -> list[str]:
    """The experiment's Markdown tables, paper tables first in their number's order."""

    def order(path: pathlib.Path):
        digits = "".join(c for c in path.stem if c.isdigit())
        return (0, int(digits), path.stem) if path.stem.startswith("table") else (1, 0, path.stem)

    skip = {"claims.md", "README.md"}
    return [p.read_text() for p in sorted(directory.glob("*.md"), key=order) if p.name not in skip]


def gallery(root: pathlib.Path, profile: str) -> pathlib.Path:
    """Write Table 1 and the profile's gallery; returns the gallery's path."""
    directory = profile_dir(root, profile)
    results = load_results(root, profile)
    if not results:
        raise FileNotFoundError(f"no results under {directory}: run `make reproduce` first")
    t1 = table1(results, profile)
    report.write_table(directory, "table1", t1)
    run_path = directory / "reproduce.json"
    run = json.loads(run_path.read_text()) if run_path.exists() else {}
    page = gallery_path(root, profile)
    link = lambda p: p.relative_to(page.parent).as_posix()  # noqa: E731
    lines = [
        f"# Results: the {profile} profile beside the paper",
        "",
        "Every number in an unlabelled column is computed by this repository's code (`make "
        f"reproduce{'' if profile == 'quick' else f' PROFILE={profile}'}`); the paper's values "
        "sit in the columns labelled paper (— where its text lost them). Substitutes are named "
        "in each table.",
        "",
    ]
    if run:
        machine = run.get("machine", {})
        lines.append(
            f"- machine: {machine.get('cpus', '?')} CPU cores, {machine.get('memory_gib', '?')} "
            f"GiB, {machine.get('platform', '?')}, JAX on {machine.get('jax_backend', '?')}"
        )
        longest = sum(e.get("longest", e["seconds"]) for e in run.get("experiments", {}).values())
        if "total_seconds" in run:
            lines.append(
                f"- last `make reproduce` run: {run['total_seconds'] / 60:.1f} min (cached units "
                f"are reused, so a rerun is quick); the longest seen, a run from scratch: "
                f"{longest / 60:.1f} min"
            )
        else:
            lines.append("- the last `make reproduce` run stopped before its end")
    all_claims = [c for name in results for c in _claims(directory / name)]
    count = {v: sum(f"**{v}**" in c for c in all_claims) for v in VERDICTS}
    lines += [
        "- the paper's qualitative claims, decided against 95% intervals (a claim tested on two "
        "regions counts once per region): "
        + ", ".join(f"{n} {v}" for v, n in count.items() if n)
        + " (listed below)",
        "",
    ]
    missing = [e for e in PAPER_ITEMS if e not in results]
    if missing:
        lines += [f"- not rendered yet at this profile: {', '.join(missing)}", ""]
    lines += ["## Table 1", "", t1[0]]
    order = [e for e in PAPER_ITEMS if e in results] + sorted(set(results) - set(PAPER_ITEMS))
    for name in order:
        data, exp_dir = results[name], directory / name
        times = run.get("experiments", {}).get(name, {})
        lines += [f"## {name}: {PAPER_ITEMS.get(name, 'not in the paper')}", ""]
        meta = f"commit `{data.get('git_commit', '?')}`"
        if times:
            longest = times.get("longest", times["seconds"])
            meta += f", last run {times['seconds']:.0f} s (longest {longest:.0f} s)"
        lines += [meta, ""]
        if diag := _diagnostics(data):
            lines += [diag, ""]
        if claims := _claims(exp_dir):
            lines += ["**Claims**", "", *claims, ""]
        for table in _tables(exp_dir):
            lines += [table]
        for png in sorted(exp_dir.glob("*.png")):
            lines += [f"![{name}: {png.stem}]({link(png)})", ""]
    page.write_text("\n".join(lines) + "\n")
    return page


def main(argv: list[str] | None = None, root: pathlib.Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    args = parser.parse_args(argv)
    print(f"wrote {gallery(root, args.profile)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
