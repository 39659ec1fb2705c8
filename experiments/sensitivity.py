"""The gap ledger (not in the paper; issue 19, item 5): which of the paper's open choices explains
each row of Table 1 where ours differs from the paper by more than ``gap`` in r or rho.

The rows are read, not written down: every overall row of Table 1 (``gallery.TABLE1``) whose
mean over seeds in ``figures/<table1_profile>/<experiment>/results.json``, against the
paper-protocol reference on the whole evaluation box, is more than ``gap`` from the paper's
value (``paper_values``). Each such row's problem is then recomputed under every variant of the
config, one open choice at a time: the activation (tanh, ReLU, GELU), the prior scale (the
precision scaled, or the width-scaled prior with variance 1/fan_in per layer), the training-set
size and model of the paper profile, the problem's noise, the MAP's initialisation and
optimiser; the evaluation region (the training data's bounding box or the whole box) is read
from every unit, since each stores both.

A unit is (problem, resolved settings, seed): the settings a variant resolves to, so variants
that resolve alike share one cached unit. Most units are the classification or regression
experiment's own ``compute`` on a ``dataclasses.replace`` of its config and problem; the
width-scaled prior, a MAP from another initialisation and a regression problem with other knobs
take ``own_compute`` below, built from the same harness pieces. The width-scaled prior without
touching the library: the network is written as W = V / sqrt(fan_in) per Dense kernel
(``WidthScaled``), with V ~ N(0, I / lambda); NUTS and Laplace in V are exact
reparametrisations, GN in V is the gradient norm in the prior's metric ("GN (prior metric)"),
and the paper's GN, the identity in W, is ||grad_W p||^2 at W* ("GN").

Run as ``python -m experiments.sensitivity --profile smoke|quick|paper`` (``--help``).
"""

import dataclasses
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import json
import pathlib
import re
import sys
from collections.abc import Callable, Sequence

import jax
import numpy as np

import gnuq
from experiments import classification, gallery, regression, sensitivity_report
from experiments.harness import agreement, cache, config, methods
from experiments.harness.agreement import PAPER_REFERENCE
from experiments.harness.experiment import ROOT, Context, Experiment
from experiments.harness.experiment import main as harness_main
from experiments.harness.paper_values import paper_value
from gnuq import likelihoods, models, problems, train
from gnuq.baselines.mcmc import McmcConfig
from gnuq.train import MapConfig

SOURCES = {  # Table 1's experiments: config file and schema of each
    "binary": ("binary.toml", classification.Config, classification),
    "multiclass": ("multiclass.toml", classification.Config, classification),
    "regression": ("regression.toml", regression.Config, regression),
}
TABLE1_REGION = "box"  # the paper's protocol: the whole evaluation grid
NOISE_KNOBS = ("noise", "flip")  # a problem's noise: the first of these knobs it has


@dataclasses.dataclass(frozen=True)
class Variant:
    """One open choice changed from the base setting (empty fields keep the base's)."""

    name: str  # as the tables show it
    choice: str  # which of the paper's open choices it varies
    activation: str = ""  # gnuq.models.ACTIVATIONS; "" = the base's
    prior_scale: float = 1.0  # multiplies the prior precision
    width_scaled_prior: bool = False  # W = V / sqrt(fan_in), V ~ N(0, I / lambda)
    noise_scale: float = 1.0  # multiplies the problem's noise knob (noise, or XOR's flip)
    paper_spec: tuple[str, ...] = ()  # problem fields (n_train, widths) from the paper profile
    map: dict = dataclasses.field(default_factory=dict)  # MapConfig fields replaced
    init_seed: int = 0  # > 0: the MAP from another initialisation (the init key folded)
    problems: tuple[str, ...] = ()  # the problems it applies to; () = all


@dataclasses.dataclass(frozen=True)
class Config:
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    grid_resolution: int  # 2D problems: resolution x resolution over the box
    grid_points: int  # 1D regression
    mcmc: McmcConfig
    table1_profile: str = "quick"  # the Table 1 whose gaps are explained
    base_profile: str = "quick"  # each experiment's profile the variants start from
    gap: float = 0.1  # a row is in the ledger when |ours - paper| > gap in r or rho
    la_samples: int = 200
    bootstrap_resamples: int = 500
    run_missing: bool = True  # false: render from the cached units only
    unit_store: str = ""  # finished units go here (committed) instead of results/


@dataclasses.dataclass(frozen=True)
class Setting:
    """Everything a unit depends on: the source experiment's resolved config and problem."""

    experiment: str  # binary, multiclass, regression
    config: object  # classification.Config or regression.Config, problems and seeds emptied
    spec: object  # its ProblemSpec
    options: dict  # the problem's knobs
    width_scaled_prior: bool
    init_seed: int

    @property
    def own(self) -> bool:
        """Whether the experiment's own ``compute`` cannot serve it."""
        regression_knobs = self.experiment == "regression" and bool(self.options)
        return self.width_scaled_prior or self.init_seed > 0 or regression_knobs


# ---------------------------------------------------------------------------------------------
# which rows, which units


def table1_records(root: pathlib.Path, profile: str) -> dict[str, list[dict]]:
    """The Table 1 experiments' records at ``profile`` (overall rows, paper reference)."""
    out = {}
    for experiment in SOURCES:
        path = root / "figures" / profile / experiment / "results.json"
        if path.exists():
            # records written before the intervals (no reference, no region) were against
            # the MAP-started reference on the whole grid: read them as such
            records = json.loads(path.read_text())["records"]
            out[experiment] = [
                {"region": TABLE1_REGION} | r
                for r in records
                if r["class"] == "overall"
                and r.get("reference", PAPER_REFERENCE) == PAPER_REFERENCE
            ]
    return out


def gap_rows(records: dict[str, list[dict]], gap: float) -> list[dict]:
    """Every (Table 1 row, statistic) whose mean over seeds on the box is more than ``gap``
    from the paper: ``{experiment, problem, label, quantity, method, stat, paper, ours}``."""
    rows = []
    for experiment, problem, label, quantity, method in gallery.TABLE1:
        paper = paper_value(experiment, problem, quantity, method, "overall")
        ours = [
            r
            for r in records.get(experiment, [])
            if (r["problem"], r["quantity"], r["method"], r["region"])
            == (problem, quantity, method, TABLE1_REGION)
        ]
        if paper is None or not ours:
            continue
        for i, stat in enumerate(("pearson", "spearman")):
            mean = float(np.mean([r[stat] for r in ours]))
            if abs(mean - paper[i]) > gap:
                rows.append(
                    {"experiment": experiment, "problem": problem, "label": label}
                    | {"quantity": quantity, "method": method, "stat": stat}
                    | {"paper": paper[i], "ours": ours}
                )
    return rows


def source_config(experiment: str, profile: str):
    file, schema, _ = SOURCES[experiment]
    return config.load(ROOT / "configs" / file, schema, profile)


def resolve(cfg: Config, experiment: str, problem: str, variant: Variant) -> Setting | None:
    """The settings ``variant`` gives ``problem``; None where it does not apply (the problem
    is not in the base profile, has no noise knob, or is not among the variant's problems)."""
    if variant.problems and problem not in variant.problems:
        return None
    base = source_config(experiment, cfg.base_profile)
    specs = {s.name: s for s in base.problems}
    if problem not in specs:
        return None
    spec = specs[problem]
    if variant.paper_spec:
        paper = {s.name: s for s in source_config(experiment, "paper").problems}[problem]
        spec = dataclasses.replace(spec, **{f: getattr(paper, f) for f in variant.paper_spec})
    options = dict(getattr(spec, "options", {}))
    if variant.noise_scale != 1.0:
        knobs = problems.get(problem, **options).options
        knob = next((k for k in NOISE_KNOBS if k in knobs), None)
        if knob is None:
            return None
        options[knob] = knobs[knob] * variant.noise_scale
    if hasattr(spec, "options"):
        spec, options = dataclasses.replace(spec, options=options), {}
    lam = base.map.prior_precision * variant.prior_scale
    grid = (
        {"grid_points": cfg.grid_points}
        if experiment == "regression"
        else {"grid_resolution": cfg.grid_resolution, "la_samples": cfg.la_samples}
    )
    resolved = dataclasses.replace(
        base,
        problems=(),
        seeds=(),
        robust_seeds=(),
        activation=variant.activation or base.activation,
        map=dataclasses.replace(base.map, prior_precision=lam, **variant.map),
        mcmc=cfg.mcmc,
        bootstrap_resamples=cfg.bootstrap_resamples,
        **grid,
    )
    return Setting(
        experiment, resolved, spec, options, variant.width_scaled_prior, variant.init_seed
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    rows: list[dict]  # gap_rows
    units: list[tuple[str, Setting]]  # (unit name, settings), each settings once
    # (experiment, problem) -> [(variant, unit name or None where it does not apply)]
    variants: dict[tuple[str, str], list[tuple[Variant, str | None]]]


def plan(cfg: Config, root: pathlib.Path) -> Plan:
    """The ledger's rows and the units they need; variants resolving alike share a unit."""
    rows = gap_rows(table1_records(root, cfg.table1_profile), cfg.gap)
    units: dict[str, tuple[str, Setting]] = {}
    studied = list(dict.fromkeys((r["experiment"], r["problem"]) for r in rows))
    variants: dict[tuple[str, str], list] = {p: [] for p in studied}
    for v in cfg.variants:  # variant by variant: a run stopped early has every row's baseline
        for experiment, problem in studied:
            setting = resolve(cfg, experiment, problem, v)
            name = None
            if setting is not None:
                key = cache.fingerprint(setting)
                slug = re.sub(r"[^a-z0-9]+", "-", v.name.lower()).strip("-")
                name = units.setdefault(key, (f"{experiment}-{problem}-{slug}", setting))[0]
            variants[(experiment, problem)].append((v, name))
    return Plan(rows, list(units.values()), variants)


def check(cfg: Config) -> None:
    if not cfg.seeds or not cfg.variants:
        raise config.ConfigError("sensitivity: give at least one seed and one variant")
    names = [v.name for v in cfg.variants]
    if len(set(names)) != len(names):
        raise config.ConfigError(f"sensitivity: variant names repeat: {names}")
    fields = {f.name for f in dataclasses.fields(MapConfig)} - {"prior_precision"}
    for v in cfg.variants:
        if v.activation and v.activation not in models.ACTIVATIONS:
            raise config.ConfigError(
                f"variant {v.name!r}: activation {v.activation!r}; choose one of "
                f"{sorted(models.ACTIVATIONS)}"
            )
        if set(v.map) - fields:
            raise config.ConfigError(
                f"variant {v.name!r}: map keys {sorted(set(v.map) - fields)}; valid: "
                f"{sorted(fields)} (the prior: prior_scale)"
            )
        if not v.prior_scale > 0 or not v.noise_scale > 0:
            raise config.ConfigError(f"variant {v.name!r}: scales must be positive")


# ---------------------------------------------------------------------------------------------
# one unit


def compute(cfg: Config, setting: Setting, seed: int, ctx: Context) -> dict[str, np.ndarray]:
    """The source experiment's arrays for one setting and seed (``own_compute`` where its
    ``compute`` cannot take the setting); a setting whose MAP or maps fail (a diverged MAP,
    an estimate constant over the grid) is stored as ``{"failed": reason}``."""
    try:
        if setting.own:
            return own_compute(setting, seed, ctx)
        module = SOURCES[setting.experiment][2]
        c = dataclasses.replace(setting.config, problems=(setting.spec,), seeds=(seed,))
        return module.compute(c, setting.spec, seed, ctx)
    except (ValueError, FloatingPointError) as err:  # a diverged MAP, a constant map: a result
        ctx.log(f"failed: {err}")
        return {"failed": np.asarray(f"{type(err).__name__}: {err}")}


@dataclasses.dataclass(frozen=True)
class WidthScaled:
    """``apply(V, x) = apply_fn(W(V), x)`` with every Dense kernel W = V / sqrt(fan_in) (the
    kernel's first axis) and biases unchanged; hashable, as the model it wraps.

    The Dense layers see the inputs as ``[1, N, features]``: gnuq's dense identity (which
    reads a Dense layer's inputs, so gradients in W) then declines this model, and the
    estimators and Laplace take the generic path, whose gradients are in V."""

    apply_fn: Callable

    def __call__(self, params, x):
        return self.apply_fn(rescale(params, -0.5), x[None])[0]


def rescale(params, power: float):
    """Every Dense kernel [fan_in, fan_out] times fan_in ** power; biases unchanged."""

    def scale(path, leaf):
        kernel = getattr(path[-1], "key", None) == "kernel"
        return leaf * leaf.shape[0] ** power if kernel else leaf

    return jax.tree_util.tree_map_with_path(scale, params)


def own_compute(setting: Setting, seed: int, ctx: Context) -> dict[str, np.ndarray]:
    """The classification / regression unit's agreement arrays, with the model written in V
    (width-scaled prior), the MAP from another initialisation, or a regression problem's
    knobs: data, keys, methods and agreement as in ``classification.compute`` and
    ``regression.compute``."""
    c, spec = setting.config, setting.spec
    options = getattr(spec, "options", None) or setting.options
    problem = problems.get(spec.name, **options)
    lik = likelihoods.get(problem.task, problem.noise_var)
    if problem.task == "gaussian":
        k_data, k_init, k_mcmc = jax.random.split(jax.random.key(seed), 3)
        k_la, grid = k_mcmc, problem.grid(c.grid_points)
        la = {}
    else:
        k_data, k_init, k_mcmc, k_la = jax.random.split(jax.random.key(seed), 4)
        grid = problem.grid(c.grid_resolution)
        la = {"la_max_full_params": c.la_max_full_params, "la_samples": c.la_samples}
    if setting.init_seed:
        k_init = jax.random.fold_in(k_init, setting.init_seed)
    x, y = problem.sample(k_data, spec.n_train)
    outputs = problem.num_classes if problem.task == "categorical" else 1
    model = models.mlp(k_init, problem.input_dim, spec.widths, outputs, c.activation)
    apply, start = model.apply, model.params
    if setting.width_scaled_prior:  # V = W sqrt(fan_in): Flax's N(0, 1/fan_in) W is N(0, 1) V
        apply, start = WidthScaled(model.apply), rescale(model.params, 0.5)
    lam = c.map.prior_precision
    fit = train.fit_map(apply, lik, start, x, y, c.map)
    ctx.log(f"MAP: ||grad U|| {fit.grad_norm:.1e}")
    identity = ("sensitivity", setting, seed)
    ref = cache.reference(
        ctx.results / "mcmc", identity, k_mcmc, apply, lik, x, y, fit.params, grid, lam, c.mcmc
    )
    d = ref.diagnostics
    ctx.log(f"NUTS from the MAP: R-hat {d.rhat_max:.3f}, ESS {d.ess_bulk_min:.0f}, ok {d.ok}")
    n_params = models.count_params(model.params)
    fitted = methods.Fit(apply, fit.params, x, y, grid, lik, lam, k_la, n_params, **la)
    arrays = methods.compute_all(fitted, problem.task)
    args = (grid, x, c.bootstrap_resamples, seed)
    out = agreement.every_agreement(problem.task, arrays, ref, None, *args)
    if setting.width_scaled_prior:  # GN in V is the prior's metric; the paper's GN is in W
        out = {
            re.sub(r"/epistemic/GN$", "/epistemic/GN (prior metric)", k): v for k, v in out.items()
        }
        gn_w = gnuq.uncertainty(
            model.apply, rescale(fit.params, -0.5), grid, likelihood=lik.name,
            noise_var=lik.noise_var,
        ).epistemic  # fmt: skip
        in_w = agreement.unit_agreements(
            problem.task, arrays | {"epistemic/GN": fitted.as_2d(gn_w)}, ref, PAPER_REFERENCE,
            *args, pairs=False,
        )  # fmt: skip
        out |= {k: v for k, v in in_w.items() if k.endswith("/epistemic/GN")}
    return (
        out
        | agreement.diagnostic_arrays(d)
        | {"n_params": np.asarray(n_params), "map_grad_norm": np.asarray(fit.grad_norm)}
    )


# ---------------------------------------------------------------------------------------------


def experiment(root: pathlib.Path = ROOT) -> Experiment:
    """The experiment whose rows are read from ``root``'s Table 1 results."""
    return Experiment(
        name="sensitivity",
        schema=Config,
        config_file="sensitivity.toml",
        units=lambda cfg: plan(cfg, root).units,
        compute=compute,
        render=lambda cfg, profile, units, out: sensitivity_report.render(
            cfg, profile, units, out, plan(cfg, root)
        ),
        code=(
            "gnuq",
            "experiments.harness.methods",
            "experiments.harness.agreement",
            "experiments.classification",
            "experiments.regression",
            sys.modules[__name__],
        ),
        # what chooses units (variants, rows) is in each unit's Setting
        unit_settings=lambda cfg: "sensitivity",
        check=check,
        description=__doc__.split("\n\n")[0],
    )


EXPERIMENT = experiment()


def main(argv: Sequence[str] | None = None, root: pathlib.Path = ROOT) -> int:
    return harness_main(experiment(root), argv, root)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except config.ConfigError as err:
        sys.exit(f"error: {err}")
