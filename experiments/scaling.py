"""Scaling sweep (paper Sec. 4.1.3, Table 10, Figure 3): GN and PE against NUTS as models grow.

4-class concentric rings; softmax regression (12 parameters), then MLP(w, w) for the configured
widths (w = 1028 gives 1 065 012 parameters). Beyond the paper, a second axis: the training-set
size N, since the paper ties the recovery of the curve to the parameter count passing N.

For every (width, N, seed): sample the data, fit the MAP, compute GN = ||grad_theta p_k||^2 and
PE = p_k (1 - p_k) on the evaluation grid, and correlate them with the NUTS reference
(``gnuq.mcmc_resumable``: no draw kept, checkpointed, resumable). Before sampling, the cost of one
gradient of the potential is measured; a reference whose upper-bound cost (every transition at
the maximal tree depth) exceeds ``max_hours_per_chain`` is not sampled but reported as needing an
accelerator, with the measured cost and the extrapolated time.

Run as ``python -m experiments.scaling`` (``--profile smoke|quick|paper``, ``--set key=value``).
"""

import dataclasses
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import pathlib
import sys
import time

import jax
import numpy as np

import gnuq
from experiments import scaling_report
from experiments.harness import agreement, cache, config
from experiments.harness.experiment import Context, Experiment, run
from gnuq import likelihoods, models, problems, train
from gnuq.baselines import mcmc_resumable
from gnuq.baselines.mcmc import McmcConfig
from gnuq.baselines.mcmc_resumable import StreamConfig
from gnuq.train import MapConfig

# the code that computes a unit, in every cache key (so a change recomputes, and only then)
CODE = (  # what a unit computes with: a change to it recomputes
    "gnuq.chunking", "gnuq.dense", "gnuq.estimators", "gnuq.likelihoods", "gnuq.baselines.mcmc",
    "gnuq.baselines.mcmc_resumable", "gnuq.baselines.sampler", "gnuq.baselines.moments",
    "gnuq.baselines.diagnostics", "gnuq.models", "gnuq.problems", "gnuq.train",
    sys.modules[__name__],
)  # fmt: skip
SOURCES = cache.code_version(*CODE)


@dataclasses.dataclass(frozen=True)
class Config:
    experiment: str
    problem: str  # a gnuq.problems name (4-class: the paper's 12/132-parameter counts)
    widths: tuple[int, ...]  # 0 = softmax regression, w = MLP(w, w)
    n_train: tuple[int, ...]  # the second axis: training-set sizes
    seeds: tuple[int, ...]
    grid_resolution: int
    activation: str = "tanh"
    max_hours_per_chain: float = 2.0  # upper-bound cost above which a size is not sampled
    run_missing: bool = True  # false: render from the cached units only, compute nothing
    map: MapConfig = dataclasses.field(default_factory=MapConfig)
    mcmc: McmcConfig = dataclasses.field(default_factory=McmcConfig)
    stream: StreamConfig = dataclasses.field(default_factory=StreamConfig)


# ---------------------------------------------------------------------------------------------
# one (width, N, seed)


def run_unit(cfg: Config, item: tuple[int, int], seed: int, log, ckpt_dir: pathlib.Path) -> dict:
    width, n_train = item
    problem = problems.get(cfg.problem)
    lik = likelihoods.get(problem.task)
    k_data, k_init, k_mcmc = jax.random.split(jax.random.key(seed), 3)
    x, y = problem.sample(k_data, n_train)
    grid = problem.grid(cfg.grid_resolution)
    widths = () if width == 0 else (width, width)
    model = models.mlp(k_init, problem.input_dim, widths, problem.num_classes, cfg.activation)
    n_params = models.count_params(model.params)

    # the cost of a gradient does not depend on where it is taken: decide before the MAP
    grad_s = seconds_per_gradient(model.apply, lik, model.params, x, y, cfg.map.prior_precision)
    steps = cfg.mcmc.num_warmup + cfg.mcmc.num_samples
    bound_h = grad_s * steps * (2**cfg.mcmc.max_tree_depth - 1) / 3600
    arrays = {
        "n_params": np.asarray(n_params),
        "n_train": np.asarray(n_train),
        "seconds_per_gradient": np.asarray(grad_s),
        "bound_hours_per_chain": np.asarray(bound_h),
    }
    if bound_h > cfg.max_hours_per_chain:
        log(
            f"{scaling_report.ACCELERATOR}: {grad_s * 1e3:.2f} ms per gradient, up to "
            f"{bound_h:.1f} h per chain > max_hours_per_chain = {cfg.max_hours_per_chain}"
        )
        return arrays | {"sampled": np.asarray(False)}

    start = time.monotonic()
    fit = train.fit_map(model.apply, lik, model.params, x, y, cfg.map)
    elapsed = time.monotonic() - start
    log(f"MAP: {n_params} parameters, ||grad U|| {fit.grad_norm:.1e} ({elapsed:.0f} s)")
    u = gnuq.uncertainty(model.apply, fit.params, grid, likelihood=problem.task)
    arrays |= {
        "gn": np.asarray(u.epistemic),
        "pe": np.asarray(u.aleatoric),
        "map_grad_norm": np.asarray(fit.grad_norm),
    }

    start = time.monotonic()
    # everything that determines the chains (the model too: activation, widths, MAP)
    # what determines the chains, as settings (another CPU's MAP differs in its last digits)
    name = cache.fingerprint(
        cfg.problem, width, n_train, seed, cfg.activation, cfg.map, cfg.grid_resolution,
        cfg.mcmc, cfg.stream, SOURCES,
    )  # fmt: skip
    ref = mcmc_resumable.reference(
        k_mcmc,
        model.apply,
        lik,
        x,
        y,
        fit.params,
        grid,
        cfg.map.prior_precision,
        cfg.mcmc,
        cfg.stream,
        checkpoint=ckpt_dir / f"chains-{name}.npz",
        log=log,
    )
    d = ref.diagnostics
    wall = time.monotonic() - start
    log(
        f"NUTS: R-hat {d.rhat_max:.3f}, bulk ESS {d.ess_bulk_min:.0f}, {d.divergences} divergent, "
        f"tree depth {d.mean_tree_depth:.1f}, {'ok' if d.ok else 'FAILED the gate'} ({wall:.0f} s)"
    )
    return (
        arrays
        | agreement.diagnostic_arrays(d)
        | {
            "sampled": np.asarray(True),
            "mcmc_epi": np.asarray(ref.epistemic),
            "mcmc_ale": np.asarray(ref.aleatoric),
            "sampling_seconds": np.asarray(wall),
            "gradients": np.asarray(np.sum(ref.chains.num_steps) + np.sum(ref.chains.warmup_steps)),
            "mean_tree_depth": np.asarray(d.mean_tree_depth),
        }
    )


def seconds_per_gradient(apply_fn, lik, params, x, y, prior_precision, repeats: int = 20) -> float:
    """Median wall-clock of one gradient of the potential (what every leapfrog step costs)."""
    grad = jax.jit(jax.grad(train.neg_log_posterior(apply_fn, lik, prior_precision)))
    jax.block_until_ready(grad(params, x, y))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(params, x, y))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# ---------------------------------------------------------------------------------------------


def compute(cfg: Config, item: tuple[int, int], seed: int, ctx: Context) -> dict:
    # float32 matrix products in full precision on GPUs too (no TF32): the leapfrog gradients
    # must be those of the potential the Metropolis step evaluates
    jax.config.update("jax_default_matmul_precision", "highest")
    return run_unit(cfg, item, seed, ctx.log, ctx.work / "chains")


def check(cfg: Config) -> None:
    if not cfg.widths or not cfg.n_train or not cfg.seeds:
        raise config.ConfigError("scaling: give at least one width, one n_train and one seed")
    if (task := problems.get(cfg.problem).task) != "categorical":
        raise config.ConfigError(f"scaling: {cfg.problem!r} is a {task} problem, not a K-class one")


EXPERIMENT = Experiment(
    name="scaling",
    schema=Config,
    config_file="scaling.toml",
    units=lambda cfg: [(f"w{w}-n{n}", (w, n)) for n in cfg.n_train for w in cfg.widths],
    compute=compute,
    render=scaling_report.render,
    code=CODE,
    # the backend too: whether a size is sampled here depends on this machine's speed
    unit_settings=lambda cfg: (
        dataclasses.replace(cfg, seeds=(), widths=(), n_train=(), run_missing=True),
        jax.default_backend(),
    ),
    check=check,
    description=__doc__.split("\n\n")[0],
)

if __name__ == "__main__":
    run(EXPERIMENT)
