"""1D regression (paper App. E / F.2.3): Table 9 with its Hessian spectrum, and the band figure.

Gaussian likelihood with the noise variance known and fixed (the problem's ``noise``^2). Models:
linear regression (2 parameters) on ``linear_1d`` and an MLP 1-32-1 (97 parameters) on
``nonlinear_1d``. Reference: NUTS Var_s f(x | theta_s) over a grid that extends beyond the
training inputs. GN: ||grad_theta f(x)||^2. LA: g^T (GGN + lambda I)^-1 g. Spectra: eigenvalues of
the Hessian and of the GGN of the negative log posterior (NLL + prior) at the MAP.

Every method of ``experiments.harness.methods`` that applies to a Gaussian likelihood is
computed; ``regression_report`` renders the tables and figures.

Run as ``python -m experiments.regression --profile smoke|quick|paper`` (``--help``).
"""

import dataclasses
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import sys
import time

import jax
import numpy as np

from experiments import regression_report
from experiments.harness import agreement, cache, config, methods
from experiments.harness.experiment import Context, Experiment, run
from gnuq import likelihoods, models, problems, train
from gnuq.baselines import curvature, laplace
from gnuq.baselines.mcmc import McmcConfig
from gnuq.train import MapConfig


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    name: str
    label: str
    widths: tuple[int, ...]
    n_train: int


@dataclasses.dataclass(frozen=True)
class Config:
    problems: tuple[ProblemSpec, ...]
    seeds: tuple[int, ...]
    grid_points: int
    activation: str = "tanh"
    map: MapConfig = dataclasses.field(default_factory=MapConfig)
    mcmc: McmcConfig = dataclasses.field(default_factory=McmcConfig)
    bootstrap_resamples: int = 1000  # for every correlation's 95% interval
    # seeds whose MLPs also get the reference from independent MAPs (one chain from each)
    robust_seeds: tuple[int, ...] = (0,)


def check(cfg: Config) -> None:
    if not cfg.problems or not cfg.seeds:
        raise config.ConfigError("regression: give at least one problem and one seed")
    for spec in cfg.problems:
        if (task := problems.get(spec.name).task) != "gaussian":
            raise config.ConfigError(
                f"regression: problem {spec.name!r} is a {task} problem, not a regression one"
            )


def compute(cfg: Config, spec: ProblemSpec, seed: int, ctx: Context) -> dict[str, np.ndarray]:
    problem = problems.get(spec.name)
    lik = likelihoods.get("gaussian", problem.noise_var)
    k_data, k_init, k_mcmc = jax.random.split(jax.random.key(seed), 3)
    x, y = problem.sample(k_data, spec.n_train)
    grid = problem.grid(cfg.grid_points)
    model = models.mlp(k_init, 1, spec.widths, 1, cfg.activation)
    lam = cfg.map.prior_precision
    fit = train.fit_map(model.apply, lik, model.params, x, y, cfg.map)
    start = time.monotonic()
    identity = ("regression", spec, cfg.activation, cfg.map, seed)  # model, data and MAP
    ref = cache.reference(
        ctx.results / "mcmc", identity, k_mcmc, model.apply, lik, x, y, fit.params, grid, lam,
        cfg.mcmc,
    )  # fmt: skip
    seconds = time.monotonic() - start
    ctx.log("NUTS from the MAP: " + agreement.diagnostics_summary(ref.diagnostics, seconds))
    robust = None
    if spec.widths and seed in cfg.robust_seeds:
        start = time.monotonic()
        robust = cache.robust_reference(
            ctx.results / "mcmc", identity, jax.random.fold_in(jax.random.key(seed), 1),
            lambda k: models.mlp(k, 1, spec.widths, 1, cfg.activation).params,
            lambda p: train.fit_map(model.apply, lik, p, x, y, cfg.map).params,
            model.apply, lik, x, y, grid, lam, cfg.mcmc,
        )  # fmt: skip
        seconds = time.monotonic() - start
        ctx.log(
            "NUTS from independent MAPs: "
            + agreement.diagnostics_summary(robust.diagnostics, seconds)
        )
    n_params = models.count_params(model.params)
    fitted = methods.Fit(model.apply, fit.params, x, y, grid, lik, lam, k_mcmc, n_params)
    arrays = methods.compute_all(fitted, "gaussian")
    arrays |= agreement.every_agreement(
        "gaussian", arrays, ref, robust, grid, x, cfg.bootstrap_resamples, seed
    )
    spectra = {}
    for kind in ("hessian", "ggn"):
        c = curvature.curvature(model.apply, fit.params, x, y, lik, kind=kind).matrix
        spectra[kind] = laplace.spectrum(c + lam * np.eye(len(c))).eigenvalues
    return (
        arrays
        | agreement.diagnostic_arrays(ref.diagnostics)
        | {
            "reference/epistemic": fitted.as_2d(ref.epistemic),
            "reference_mean": ref.mean[:, 0],
            "map_mean": np.asarray(methods.gradient_norms(fitted).probs),
            "grid": np.asarray(grid),
            "x": np.asarray(x),
            "y": np.asarray(y),
            "n_params": np.asarray(n_params),
            "hessian_eigs": spectra["hessian"],
            "ggn_eigs": spectra["ggn"],
        }
    )


EXPERIMENT = Experiment(
    name="regression",
    schema=Config,
    config_file="regression.toml",
    units=lambda cfg: [(spec.name, spec) for spec in cfg.problems],
    compute=compute,
    render=regression_report.render,
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

if __name__ == "__main__":
    run(EXPERIMENT)
