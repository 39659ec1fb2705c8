"""Classification validation (paper Sec. 4.1.1, App. F): GN and PE against the NUTS reference.

Binary Linear / XOR / Rings (Tables 5, 6; Figs 5-8) and 4-class Clusters / Spirals / Rings
(Table 8; Fig 2). For every problem and seed: sample the training data, fit the MAP, sample the
reference posterior, compute the gradient norm (GN), the point-estimate aleatoric p(1 - p) (PE)
and the Laplace baselines (full GGN + prior where it fits, else KFAC), correlate each with the
reference over the evaluation grid, cache, and render tables and maps.

Run as ``python -m experiments.binary`` or ``python -m experiments.multiclass``
(``--profile smoke|quick|paper``, ``--set key=value``).
"""

import dataclasses
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np

import gnuq
from experiments.harness import cache, config, report
from experiments.harness.units import run_units
from gnuq import likelihoods, models, problems, stats, train
from gnuq.baselines import laplace
from gnuq.baselines.mcmc import McmcConfig
from gnuq.train import MapConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = cache.code_version("gnuq", sys.modules[__name__])  # code changes recompute
EPISTEMIC = ("GN", "LA", "GN-vs-LA")
ALEATORIC = ("PE", "LA", "PE-vs-LA")


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    name: str  # a gnuq.problems name
    label: str  # as the tables show it
    widths: tuple[int, ...]  # hidden layers; () = logistic / softmax regression
    n_train: int
    options: dict = dataclasses.field(default_factory=dict)  # the problem's knobs


@dataclasses.dataclass(frozen=True)
class Config:
    experiment: str
    problems: tuple[ProblemSpec, ...]
    seeds: tuple[int, ...]
    grid_resolution: int
    activation: str = "tanh"
    map: MapConfig = dataclasses.field(default_factory=MapConfig)
    mcmc: McmcConfig = dataclasses.field(default_factory=McmcConfig)
    la_max_full_params: int = 20_000  # above: KFAC instead of the full GGN
    la_samples: int = 1000  # draws from the Laplace posterior for its aleatoric estimate


# ---------------------------------------------------------------------------------------------
# one problem and seed


def run_unit(
    cfg: Config, spec: ProblemSpec, seed: int, log, mcmc_cache: pathlib.Path
) -> dict[str, np.ndarray]:
    """Every array the tables and figures need for one (problem, seed)."""
    problem = problems.get(spec.name, **spec.options)
    lik = likelihoods.get(problem.task)
    k_data, k_init, k_mcmc, k_la = jax.random.split(jax.random.key(seed), 4)
    x, y = problem.sample(k_data, spec.n_train)
    grid = problem.grid(cfg.grid_resolution)
    outputs = problem.num_classes if problem.task == "categorical" else 1
    model = models.mlp(k_init, problem.input_dim, spec.widths, outputs, cfg.activation)
    n_params = models.count_params(model.params)

    start = time.monotonic()
    fit = train.fit_map(model.apply, lik, model.params, x, y, cfg.map)
    log(
        f"MAP: {n_params} parameters, ||grad U|| {fit.grad_norm:.1e} "
        f"({time.monotonic() - start:.0f} s)"
    )

    start = time.monotonic()
    ref = cache.reference(
        mcmc_cache,
        ("mlp", problem.input_dim, spec.widths, outputs, cfg.activation),
        k_mcmc,
        model.apply,
        lik,
        x,
        y,
        fit.params,
        grid,
        cfg.map.prior_precision,
        cfg.mcmc,
    )
    d = ref.diagnostics
    log(
        f"NUTS: R-hat {d.rhat_max:.3f}, bulk ESS {d.ess_bulk_min:.0f}, {d.divergences} divergent, "
        f"{'ok' if d.ok else 'FAILED the gate'} ({time.monotonic() - start:.0f} s)"
    )

    u = gnuq.uncertainty(model.apply, fit.params, grid, likelihood=problem.task)
    structure = "full" if n_params <= cfg.la_max_full_params else "kfac"
    post = laplace.laplace_posterior(
        model.apply, fit.params, x, y, lik, cfg.map.prior_precision, structure=structure
    )
    la_epi = laplace.linearised_epistemic(model.apply, fit.params, grid, lik, post)
    _, la_var, la_ale = laplace.sampled_moments(
        k_la, model.apply, fit.params, grid, lik, post, cfg.la_samples
    )
    as_2d = lambda a: np.asarray(a).reshape(len(grid), -1)  # noqa: E731
    return {
        "gn": as_2d(u.epistemic),
        "pe": as_2d(u.aleatoric),
        "probs": as_2d(u.probs),
        "mcmc_epi": as_2d(ref.epistemic),
        "mcmc_ale": as_2d(ref.aleatoric),
        "la_epi": as_2d(la_epi),
        "la_var": as_2d(la_var),
        "la_ale": as_2d(la_ale),
        "x": np.asarray(x),
        "y": np.asarray(y),
        "n_params": np.asarray(n_params),
        "la_structure": np.asarray(structure),
        "map_grad_norm": np.asarray(fit.grad_norm),
        "rhat_max": np.asarray(d.rhat_max),
        "ess_bulk_min": np.asarray(d.ess_bulk_min),
        "rhat_params": np.asarray(d.rhat_max_params),
        "ess_params": np.asarray(d.ess_bulk_min_params),
        "rhat_predictive": np.asarray(d.rhat_max_predictive),
        "ess_predictive": np.asarray(d.ess_bulk_min_predictive),
        "divergences": np.asarray(d.divergences),
        "ok": np.asarray(d.ok),
    }


def unit_records(spec: ProblemSpec, seed: int, arrays: dict) -> list[dict]:
    """Correlation records of one (problem, seed); for several classes per class and pooled
    over all (input, class) pairs ("overall")."""
    pairs = {
        ("epistemic", "GN"): ("gn", "mcmc_epi"),
        ("epistemic", "LA"): ("la_epi", "mcmc_epi"),
        ("epistemic", "GN-vs-LA"): ("gn", "la_epi"),
        ("aleatoric", "PE"): ("pe", "mcmc_ale"),
        ("aleatoric", "LA"): ("la_ale", "mcmc_ale"),
        ("aleatoric", "PE-vs-LA"): ("pe", "la_ale"),
    }
    records = []
    for (quantity, method), (a, b) in pairs.items():
        for klass, r, rho in stats.class_correlations(arrays[a], arrays[b]):
            records.append(
                {
                    "problem": spec.name,
                    "model": model_name(spec),
                    "n_params": int(arrays["n_params"]),
                    "quantity": quantity,
                    "method": method,
                    "class": klass,
                    "seed": seed,
                    "pearson": r,
                    "spearman": rho,
                }
            )
    return records


def model_name(spec: ProblemSpec) -> str:
    return "MLP" + str(tuple(spec.widths)).replace(" ", "") if spec.widths else "GLM"


# ---------------------------------------------------------------------------------------------
# rendering


def render(cfg: Config, profile: str, units: dict, out: pathlib.Path) -> list[str]:
    """Tables, figures and claims from the cached units; returns the claims' lines."""
    specs = {s.name: s for s in cfg.problems}
    records = [r for (name, seed), a in units.items() for r in unit_records(specs[name], seed, a)]
    diagnostics = [
        {
            "problem": name,
            "model": model_name(specs[name]),
            "seed": seed,
            "rhat_max": float(a["rhat_max"]),
            "ess_bulk_min": float(a["ess_bulk_min"]),
            "divergences": int(a["divergences"]),
            "ok": bool(a["ok"]),
            "rhat_max_params": float(a["rhat_params"]),
            "ess_bulk_min_params": float(a["ess_params"]),
            "rhat_max_predictive": float(a["rhat_predictive"]),
            "ess_bulk_min_predictive": float(a["ess_predictive"]),
        }
        for (name, seed), a in units.items()
    ]
    report.write_results(out, cfg.experiment, profile, cfg, records, diagnostics)

    binary = cfg.experiment == "binary"
    if binary:
        rows = [(s.name, s.label, "overall") for s in cfg.problems]
        names = {"epistemic": "table5", "aleatoric": "table6"}
    else:
        rows = [
            (s.name, f"{s.label} {k}", k) for s in cfg.problems for k in (0, 1, 2, 3, "overall")
        ]
        names = {"epistemic": "table8_epistemic", "aleatoric": "table8_aleatoric"}
    seeds = f"{len(cfg.seeds)} seed{'s' * (len(cfg.seeds) > 1)}"
    for quantity, methods in (("epistemic", EPISTEMIC), ("aleatoric", ALEATORIC)):
        caption = (
            f"{cfg.experiment} {quantity} uncertainty vs the NUTS reference ({profile} profile, "
            f"{seeds}: mean [min, max]); 'paper' columns are the paper's values"
        )
        table = report.correlation_table(
            records,
            experiment=cfg.experiment,
            quantity=quantity,
            methods=methods,
            rows=rows,
            caption=caption,
        )
        report.write_table(out, names[quantity], table)

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
    report.write_table(
        out,
        "diagnostics",
        report.rows_table(
            [
                "problem",
                "model",
                "seed",
                "R-hat (predictions)",
                "ESS (predictions)",
                "R-hat (parameters)",
                "ESS (parameters)",
                "divergences",
                "gate",
            ],
            body,
            f"NUTS reference diagnostics (gate on the {cfg.mcmc.gate} quantities: R-hat <= "
            f"{cfg.mcmc.max_rhat}, bulk ESS >= {cfg.mcmc.min_ess:.0f}, divergences <= "
            f"{cfg.mcmc.max_divergences})",
        ),
    )
    claims = check_claims(cfg, records)
    (out / "claims.md").write_text("\n".join(claims) + "\n")

    first = cfg.seeds[0]
    for spec in cfg.problems:
        draw_maps(cfg, spec, units[(spec.name, first)], first, out)
    return claims


def _mean(records, problem, quantity, method, klass, stat) -> float:
    values = [
        r[stat]
        for r in records
        if (r["problem"], r["quantity"], r["method"], r["class"])
        == (problem, quantity, method, klass)
    ]
    return float(np.mean(values))


def check_claims(cfg: Config, records: list[dict]) -> list[str]:
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
                np.ptp([_mean(records, n, "epistemic", "GN", k, s) for k in range(4)])
                for s in ("pearson", "spearman")
            )
            for n in names
        }
        claim(
            "per-class GN correlations are consistent within each problem (range <= 0.15)",
            max(spans.values()) <= 0.15,
            ", ".join(f"{n}: {v:.2f}" for n, v in spans.items()),
        )
    return lines


def draw_maps(cfg: Config, spec: ProblemSpec, a: dict, seed: int, out: pathlib.Path) -> None:
    problem = problems.get(spec.name, **spec.options)

    def panel(name, est, ref):
        if ref is None:
            return (name, est)
        r, rho = stats.correlations(est, ref)
        return (f"{name}  r={r:.2f} ρ={rho:.2f}", est)

    n_classes = a["gn"].shape[1]
    rows = []
    for k in range(n_classes):
        tag = "" if n_classes == 1 else f" c{k}"
        col = lambda key, k=k: a[key][:, k]  # noqa: E731
        rows.append(
            [
                panel(f"MCMC epi{tag}", col("mcmc_epi"), None),
                panel(f"GN{tag}", col("gn"), col("mcmc_epi")),
                panel(f"LA{tag}", col("la_epi"), col("mcmc_epi")),
                panel(f"MCMC ale{tag}", col("mcmc_ale"), None),
                panel(f"PE{tag}", col("pe"), col("mcmc_ale")),
                panel(f"LA ale{tag}", col("la_ale"), col("mcmc_ale")),
            ]
        )
    if n_classes == 1:
        rows = [rows[0][:3], rows[0][3:]]
    report.maps_figure(
        out / f"maps_{spec.name}",
        rows,
        cfg.grid_resolution,
        problem.box,
        a["x"],
        a["y"],
        f"{spec.label}: normalised uncertainty, seed {seed} (reference: NUTS, "
        f"{'ok' if bool(a['ok']) else 'gate FAILED'})",
    )


# ---------------------------------------------------------------------------------------------


def main(default_config: str, argv: Sequence[str] | None = None, root: pathlib.Path = ROOT) -> int:
    """Run the experiment; outputs go under ``root`` (figures/ and results/)."""
    cfg, profile, _ = config.cli(Config, ROOT / "configs" / default_config, argv)
    out = root / "figures" / profile / cfg.experiment
    start = time.monotonic()
    units = run_units(
        f"{cfg.experiment} {profile}",
        [(spec.name, spec) for spec in cfg.problems],
        cfg.seeds,
        root / "results" / profile / cfg.experiment,
        (dataclasses.replace(cfg, seeds=(), problems=()), SOURCES),
        lambda spec, seed, log: run_unit(cfg, spec, seed, log, root / "results" / "mcmc"),
    )
    claims = render(cfg, profile, units, out)
    print("\n".join(claims[2:]))
    print(f"wrote {out} in {time.monotonic() - start:.0f} s")
    return 0
