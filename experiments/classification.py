"""Classification validation (paper Sec. 4.1.1, App. F): every registered method against NUTS.

Binary Linear / XOR / Rings (Tables 5, 6; Figs 5-8) and 4-class Clusters / Spirals / Rings
(Table 8; Fig 2). For every problem and seed: sample the training data, fit the MAP, sample the
reference posterior, compute every method of ``experiments.harness.methods`` that applies (the
gradient norm GN, the point-estimate aleatoric p(1 - p) PE, the Laplace baselines) over the
evaluation grid, and cache them; ``classification_report`` correlates each with the reference
and renders the tables, maps and claims.

Run as ``python -m experiments.binary`` or ``python -m experiments.multiclass``
(``--profile smoke|quick|paper``, ``--set key=value``, ``--help`` for every key).
"""

import dataclasses
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import sys
import time
from typing import Literal

import jax
import numpy as np

from experiments import classification_report
from experiments.harness import agreement, cache, config, methods
from experiments.harness.experiment import Context, Experiment
from gnuq import likelihoods, models, problems, train
from gnuq.baselines.mcmc import McmcConfig
from gnuq.train import MapConfig


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    name: str  # a gnuq.problems name
    label: str  # as the tables show it
    widths: tuple[int, ...]  # hidden layers; () = logistic / softmax regression
    n_train: int
    options: dict = dataclasses.field(default_factory=dict)  # the problem's knobs


@dataclasses.dataclass(frozen=True)
class Config:
    experiment: Literal["binary", "multiclass"]  # which paper tables the problems fill
    problems: tuple[ProblemSpec, ...]
    seeds: tuple[int, ...]
    grid_resolution: int
    activation: str = "tanh"
    map: MapConfig = dataclasses.field(default_factory=MapConfig)
    mcmc: McmcConfig = dataclasses.field(default_factory=McmcConfig)
    la_max_full_params: int = 20_000  # above: KFAC instead of the full GGN
    la_samples: int = 1000  # draws from the Laplace posterior for its aleatoric estimate
    bootstrap_resamples: int = 1000  # for every correlation's 95% interval
    # seeds whose MLPs also get the reference from independent MAPs (one chain from each)
    robust_seeds: tuple[int, ...] = (0,)


def check(cfg: Config) -> None:
    if not cfg.problems or not cfg.seeds:
        raise config.ConfigError("classification: give at least one problem and one seed")
    for spec in cfg.problems:
        task = problems.get(spec.name, **spec.options).task
        if task not in methods.CLASSIFICATION:
            raise config.ConfigError(
                f"problem {spec.name!r} is a {task} problem; the classification experiments "
                f"take {methods.CLASSIFICATION} problems (regression: experiments.regression)"
            )


def compute(cfg: Config, spec: ProblemSpec, seed: int, ctx: Context) -> dict[str, np.ndarray]:
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
    ctx.log(
        f"MAP: {n_params} parameters, ||grad U|| {fit.grad_norm:.1e} "
        f"({time.monotonic() - start:.0f} s)"
    )

    start = time.monotonic()
    identity = ("classification", spec, cfg.activation, cfg.map, seed)  # model, data and MAP
    ref = cache.reference(
        ctx.results / "mcmc",
        identity,
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
    seconds = time.monotonic() - start
    ctx.log("NUTS from the MAP: " + agreement.diagnostics_summary(ref.diagnostics, seconds))

    fitted = methods.Fit(
        model.apply, fit.params, x, y, grid, lik, cfg.map.prior_precision, k_la, n_params,
        cfg.la_max_full_params, cfg.la_samples,
    )  # fmt: skip
    robust = None
    if spec.widths and seed in cfg.robust_seeds:
        start = time.monotonic()
        robust = cache.robust_reference(
            ctx.results / "mcmc", identity, jax.random.fold_in(jax.random.key(seed), 1),
            lambda k: models.mlp(k, problem.input_dim, spec.widths, outputs, cfg.activation).params,
            lambda p: train.fit_map(model.apply, lik, p, x, y, cfg.map).params,
            model.apply, lik, x, y, grid, cfg.map.prior_precision, cfg.mcmc,
        )  # fmt: skip
        seconds = time.monotonic() - start
        ctx.log(
            "NUTS from independent MAPs: "
            + agreement.diagnostics_summary(robust.diagnostics, seconds)
        )
    arrays = methods.compute_all(fitted, problem.task)
    arrays |= agreement.every_agreement(
        problem.task, arrays, ref, robust, grid, x, cfg.bootstrap_resamples, seed
    )
    return (
        arrays
        | agreement.diagnostic_arrays(ref.diagnostics)
        | {
            "reference/epistemic": fitted.as_2d(ref.epistemic),
            "reference/aleatoric": fitted.as_2d(ref.aleatoric),
            "probs": fitted.as_2d(methods.gradient_norms(fitted).probs),
            "x": np.asarray(x),
            "y": np.asarray(y),
            "n_params": np.asarray(n_params),
            "la_structure": np.asarray(methods.la_structure(fitted)),
            "map_grad_norm": np.asarray(fit.grad_norm),
        }
    )


EXPERIMENT = Experiment(
    name="classification",
    schema=Config,
    config_file="binary.toml",
    units=lambda cfg: [(spec.name, spec) for spec in cfg.problems],
    compute=compute,
    render=classification_report.render,
    code=(
        "gnuq",
        "experiments.harness.methods",
        "experiments.harness.agreement",
        sys.modules[__name__],
    ),
    unit_settings=lambda cfg: dataclasses.replace(cfg, seeds=(), problems=()),
    check=check,
    description=__doc__.split("\n\n")[0],
)
BINARY = dataclasses.replace(EXPERIMENT, name="binary", config_file="binary.toml")
MULTICLASS = dataclasses.replace(EXPERIMENT, name="multiclass", config_file="multiclass.toml")
