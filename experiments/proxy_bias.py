"""Proxy-Hessian bias (paper Sec. 3.1, App. A): Table 3 and Figure 1.

A binary MLP (2-32-32-1, 1 185 parameters) is trained on all of the data; its curvature is then
estimated from only the top half (F_A, the empirical Fisher of the points with x1 > 0) or only the
bottom half (F_B) of the training inputs, as a covariance built from proxy data would be. On the
evaluation grid:

    U_I = ||g||^2,   U_A = g^T (F_A + lambda I)^-1 g,   U_B = g^T (F_B + lambda I)^-1 g

The problems' decision boundaries are symmetric under x -> -x, so an unbiased estimate has a
top/bottom symmetry ratio (mean over the grid's top half / mean over its bottom half) near 1.
Statistics: the ratio for I, A and B; log(U_A / U_B) per grid point, with Welch's t-test between
the grid's top and bottom halves, its p-value and Cohen's d.

``proxy_bias_report`` renders the table, figure and claims. Run as
``python -m experiments.proxy_bias --profile smoke|quick|paper`` (``--help``).
"""

import dataclasses
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import gnuq
from experiments import proxy_bias_report
from experiments.harness import config
from experiments.harness.experiment import Context, Experiment, run
from gnuq import likelihoods, models, problems, train
from gnuq.baselines import laplace
from gnuq.train import MapConfig


@dataclasses.dataclass(frozen=True)
class Config:
    problems: tuple[str, ...]
    labels: tuple[str, ...]
    widths: tuple[int, ...]
    n_train: int
    seeds: tuple[int, ...]
    grid_resolution: int
    activation: str = "tanh"
    map: MapConfig = dataclasses.field(default_factory=MapConfig)


def compute(cfg: Config, name: str, seed: int, ctx: Context) -> dict[str, np.ndarray]:
    # float64: far from the data g is tiny, and in float32 g^T Sigma g underflows to 0 there,
    # which would make log(U_A / U_B) undefined exactly where the proxies disagree most
    with jax.enable_x64(True):
        return _compute(cfg, name, seed, ctx.log)


def _compute(cfg: Config, name: str, seed: int, log) -> dict[str, np.ndarray]:
    problem = problems.get(name)
    lik = likelihoods.get("bernoulli")
    k_data, k_init = jax.random.split(jax.random.key(seed))
    x, y = problem.sample(k_data, cfg.n_train)
    x = x.astype(jnp.float64)
    model = models.mlp(k_init, 2, cfg.widths, 1, cfg.activation, dtype=jnp.float64)
    start = time.monotonic()
    fit = train.fit_map(model.apply, lik, model.params, x, y, cfg.map)
    top = np.asarray(x[:, 1] > 0)
    grid = problem.grid(cfg.grid_resolution).astype(jnp.float64)
    u = {
        "I": np.asarray(
            gnuq.squared_grad_norms(model.apply, fit.params, grid, likelihood="bernoulli")
        )[:, 0]
    }
    for label, mask in (("A", top), ("B", ~top)):
        post = laplace.proxy_posterior(
            model.apply, fit.params, x, y, lik, cfg.map.prior_precision, mask
        )
        u[label] = np.asarray(
            laplace.linearised_epistemic(model.apply, fit.params, grid, lik, post)
        )[:, 0]
    for label, values in u.items():
        if not np.all(np.isfinite(values) & (values > 0)):
            raise FloatingPointError(
                f"U_{label} has {np.sum(~(values > 0))} non-positive or non-finite grid values "
                f"on {name}, seed {seed}: the log ratio would be undefined"
            )
    log(
        f"{models.count_params(model.params)} parameters, {top.sum()} top / {(~top).sum()} "
        f"bottom training points ({time.monotonic() - start:.0f} s)"
    )
    return {
        "U_I": u["I"],
        "U_A": u["A"],
        "U_B": u["B"],
        "x": np.asarray(x),
        "top": top,
        "grid_top": np.asarray(grid[:, 1] > 0),
        "n_params": np.asarray(models.count_params(model.params)),
    }


def check(cfg: Config) -> None:
    if len(cfg.labels) != len(cfg.problems):
        raise config.ConfigError("proxy_bias: labels must name every problem, in order")
    if not cfg.problems or not cfg.seeds:
        raise config.ConfigError("proxy_bias: give at least one problem and one seed")
    for name in cfg.problems:
        if (task := problems.get(name).task) != "bernoulli":
            raise config.ConfigError(f"proxy_bias: {name!r} is a {task} problem, not a binary one")


EXPERIMENT = Experiment(
    name="proxy_bias",
    schema=Config,
    config_file="proxy_bias.toml",
    units=lambda cfg: [(name, name) for name in cfg.problems],
    compute=compute,
    render=proxy_bias_report.render,
    code=("gnuq", sys.modules[__name__]),
    unit_settings=lambda cfg: dataclasses.replace(cfg, seeds=(), problems=(), labels=()),
    check=check,
    description=__doc__.split("\n\n")[0],
)

if __name__ == "__main__":
    run(EXPERIMENT)
