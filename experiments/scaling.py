"""Scaling sweep (paper Sec. 4.1.3, Table 10, Figure 3): GN and PE against NUTS as models grow.

4-class concentric rings; softmax regression (12 parameters), then MLP(w, w) for the configured
widths (w = 1028 gives 1 065 012 parameters). Beyond the paper, a second axis: the training-set
size N, since the paper ties the recovery of the curve to the parameter count passing N.

For every (width, N, seed): sample the data, fit the MAP, compute GN = ||grad_theta p_k||^2 and
PE = p_k (1 - p_k) on the evaluation grid, and correlate them with the NUTS reference
(``gnuq.mcmc_resumable``: no draw kept, checkpointed, resumable), on the data region and the whole
box, with 95% intervals from a spatial block bootstrap. Before sampling, the cost of one
gradient of the potential is measured; a reference not in the store whose upper-bound cost (every
transition at the maximal tree depth) exceeds ``max_hours_per_chain`` is not sampled but listed
with the measured cost and the extrapolated time (``max_hours_per_chain = 0`` lists what remains).

Run as ``python -m experiments.scaling`` (``--profile smoke|quick|paper``, ``--set key=value``).
"""

import dataclasses
import math
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
from gnuq import likelihoods, models, priors, problems, train
from gnuq.baselines import mcmc_resumable
from gnuq.baselines.mcmc import McmcConfig
from gnuq.baselines.mcmc_resumable import StreamConfig
from gnuq.train import MapConfig

# the code that computes a unit, in every cache key (so a change recomputes, and only then)
CODE = (  # what a unit computes with: a change to it recomputes
    "gnuq.chunking", "gnuq.dense", "gnuq.estimators", "gnuq.likelihoods", "gnuq.baselines.mcmc",
    "gnuq.baselines.mcmc_resumable", "gnuq.baselines.sampler", "gnuq.baselines.moments",
    "gnuq.baselines.diagnostics", "gnuq.models", "gnuq.priors", "gnuq.problems", "gnuq.train",
    sys.modules[__name__],
)  # fmt: skip


PRIORS = scaling_report.PRIORS_ORDER
# what a stored reference depends on beside its settings: the sampler, the MAP it starts from
# and the model; not the library versions (a reference sampled under another jax is a sample of
# the same posterior, as one sampled on another CPU is), so a committed store outlives upgrades;
# this module by name, not __name__: a run as a script (__main__) and an import (make reproduce)
# must find the same references
REFERENCE_CODE = cache.code_version(
    "gnuq.baselines.mcmc_resumable:reference", "gnuq.train:fit_map", "gnuq.models",
    "gnuq.priors", "gnuq.problems", "experiments.scaling:prior_model", libraries=(),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Config:
    experiment: str
    problem: str  # a gnuq.problems name (4-class: the paper's 12/132-parameter counts)
    widths: tuple[int, ...]  # 0 = softmax regression, w = MLP(w, w)
    n_train: tuple[int, ...]  # the second axis: training-set sizes
    seeds: tuple[int, ...]
    grid_resolution: int
    priors: tuple[str, ...] = ("isotropic",)  # the third axis: PRIORS
    # width_scaled: kernels ~ N(0, s^2 / fan_in) with s = prior_scale[str(N)], a scale per N
    prior_scale: dict[str, float] = dataclasses.field(default_factory=dict)
    activation: str = "tanh"
    bootstrap_resamples: int = 1000  # spatial block bootstrap behind every correlation's interval
    max_hours_per_chain: float = 2.0  # upper-bound cost above which a size is not sampled
    run_missing: bool = True  # false: render from the cached units only, compute nothing
    # where finished references and in-flight chain checkpoints go, relative to the repository
    # (a tracked folder, so a fresh clone resumes a long run); "" = the untracked results/
    reference_store: str = ""
    map: MapConfig = dataclasses.field(default_factory=MapConfig)
    mcmc: McmcConfig = dataclasses.field(default_factory=McmcConfig)
    stream: StreamConfig = dataclasses.field(default_factory=StreamConfig)


# ---------------------------------------------------------------------------------------------
# one (prior, width, N, seed)


def prior_model(cfg, prior: str, key, widths: tuple[int, ...], problem, scale: float | None):
    """The network in the coordinates where its prior is N(0, I / prior_precision), with its
    initial params there; the network in the paper's weights; the map from the first's params to
    the second's (identity for ``isotropic``). ``scale``: the width-scaled prior's s
    (``unit_scale``). ``cfg``: a ``Config``, deliberately not annotated as one:
    ``REFERENCE_CODE`` follows every name this definition uses, and a new ``Config`` field must
    not invalidate the stored references."""
    model = models.mlp(key, problem.input_dim, widths, problem.num_classes, cfg.activation)
    if prior == "isotropic":
        return model, model.apply, lambda params: params
    scaled = priors.scaled(model, priors.width_scaled_stds(model.params, scale))
    # start at a draw from the prior (the neural-tangent initialisation): the original init
    # mapped back is N(0, 1 / scale^2), from where the MAP fit stays at the prior's mode
    leaves, treedef = jax.tree.flatten(scaled.model.params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    std = cfg.map.prior_precision**-0.5
    start = [
        std * jax.random.normal(k, leaf.shape, leaf.dtype)
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    sampled = scaled.model._replace(params=jax.tree.unflatten(treedef, start))
    return sampled, model.apply, scaled.to_original


def run_unit(
    cfg: Config, item: tuple[str, int, int, float | None], seed: int, log, store: pathlib.Path
) -> dict:
    prior, width, n_train, scale = item
    problem = problems.get(cfg.problem)
    lik = likelihoods.get(problem.task)
    k_data, k_init, k_mcmc = jax.random.split(jax.random.key(seed), 3)
    x, y = problem.sample(k_data, n_train)
    grid = problem.grid(cfg.grid_resolution)
    widths = () if width == 0 else (width, width)
    model, weights_apply, to_weights = prior_model(cfg, prior, k_init, widths, problem, scale)
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
        "prior_scale": np.asarray(np.nan if scale is None else scale),
    }
    # what determines the chains, as settings (another CPU's MAP differs in its last digits)
    name = cache.fingerprint(
        cfg.problem, prior, scale, width, n_train, seed, cfg.activation, cfg.map,
        cfg.grid_resolution, cfg.mcmc, cfg.stream, REFERENCE_CODE,
    )  # fmt: skip
    chains, stored = store / f"chains-{name}.npz", store / f"reference-{name}.npz"
    # a stored reference is used whatever its cost here (it may have been sampled elsewhere)
    if not stored.exists() and bound_h > cfg.max_hours_per_chain:
        log(
            f"{scaling_report.NOT_SAMPLED}: {grad_s * 1e3:.2f} ms per gradient, up to "
            f"{bound_h:.1f} h per chain > max_hours_per_chain = {cfg.max_hours_per_chain}"
        )
        return arrays | {"sampled": np.asarray(False)}

    start = time.monotonic()
    fit = train.fit_map(model.apply, lik, model.params, x, y, cfg.map)
    accuracy = float(np.mean(np.argmax(model.apply(fit.params, x), -1) == y))
    log(
        f"MAP ({prior} prior): {n_params} parameters, ||grad U|| {fit.grad_norm:.1e}, training "
        f"accuracy {accuracy:.2f} ({time.monotonic() - start:.0f} s)"
    )
    # the paper's GN: identity covariance in the paper's weights; and in the prior's metric
    # (identity in the coordinates sampled here: the same under the isotropic prior)
    u = gnuq.uncertainty(model.apply, fit.params, grid, likelihood=problem.task)
    gn = u.epistemic
    if prior != "isotropic":
        weights = to_weights(fit.params)
        gn = gnuq.uncertainty(weights_apply, weights, grid, likelihood=problem.task).epistemic
    arrays |= {
        "gn": np.asarray(gn),
        "gn_prior": np.asarray(u.epistemic),
        "pe": np.asarray(u.aleatoric),
        "map_grad_norm": np.asarray(fit.grad_norm),
        "map_train_accuracy": np.asarray(accuracy),
    }

    def sample() -> dict:
        start = time.monotonic()
        ref = mcmc_resumable.reference(
            k_mcmc, model.apply, lik, x, y, fit.params, grid, cfg.map.prior_precision,
            cfg.mcmc, cfg.stream, checkpoint=chains, log=log,
        )  # fmt: skip
        d = ref.diagnostics
        return agreement.diagnostic_arrays(d) | {
            "mcmc_epi": np.asarray(ref.epistemic, np.float32),
            "mcmc_ale": np.asarray(ref.aleatoric, np.float32),
            "sampling_seconds": np.asarray(time.monotonic() - start),
            "gradients": np.asarray(np.sum(ref.chains.num_steps) + np.sum(ref.chains.warmup_steps)),
            "mean_tree_depth": np.asarray(d.mean_tree_depth),
        }

    if stored.exists():
        log(f"reference from {stored}")
    ref = cache.load_or_compute(stored, sample)
    chains.unlink(missing_ok=True)  # finished: the compact reference replaces the checkpoint
    log(
        f"NUTS: R-hat {float(ref['diagnostics/rhat_max']):.3f}, bulk ESS "
        f"{float(ref['diagnostics/ess_bulk_min']):.0f}, "
        f"{int(ref['diagnostics/divergences'])} divergent, tree depth "
        f"{float(ref['mean_tree_depth']):.1f}, "
        f"{'ok' if bool(ref['diagnostics/ok']) else 'FAILED the gate'} "
        f"({float(ref['sampling_seconds']):.0f} s when sampled)"
    )
    arrays |= ref | {"sampled": np.asarray(True)}
    # the streamed reference keeps no draws: its map is held fixed in the bootstrap
    return arrays | agreement.against_fixed(
        arrays, scaling_report.PAIRS, agreement.PAPER_REFERENCE, grid, x,
        cfg.bootstrap_resamples, seed,
    )  # fmt: skip


def unit_scale(cfg: Config, prior: str, n_train: int) -> float | None:
    """The width-scaled prior's s at training-set size ``n_train`` (None under N(0, I)): the
    smallest scale whose MAP fits that N (``experiments.scaling_prior_scale``), so the prior
    is chosen per N, as the data it must fit is."""
    return None if prior == "isotropic" else cfg.prior_scale[str(n_train)]


def seconds_per_gradient(apply_fn, lik, params, x, y, prior_precision, repeats: int = 20) -> float:
    """Wall-clock of one gradient of the potential (what every leapfrog step costs): the
    fastest of ``repeats``, the one least disturbed by other work on the machine."""
    grad = jax.jit(jax.grad(train.neg_log_posterior(apply_fn, lik, prior_precision)))
    jax.block_until_ready(grad(params, x, y))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(params, x, y))
        times.append(time.perf_counter() - start)
    return float(np.min(times))


# ---------------------------------------------------------------------------------------------


def compute(cfg: Config, item: tuple[str, int, int, float | None], seed: int, ctx: Context) -> dict:
    # float32 matrix products in full precision on GPUs too (no TF32): the leapfrog gradients
    # must be those of the potential the Metropolis step evaluates
    jax.config.update("jax_default_matmul_precision", "highest")
    root = ctx.results.parent
    store = root / cfg.reference_store if cfg.reference_store else ctx.work / "references"
    return run_unit(cfg, item, seed, ctx.log, store)


def check(cfg: Config) -> None:
    if not cfg.widths or not cfg.n_train or not cfg.seeds:
        raise config.ConfigError("scaling: give at least one width, one n_train and one seed")
    if unknown := sorted(set(cfg.priors) - set(PRIORS)):
        raise config.ConfigError(f"scaling: unknown priors {unknown}; choose from {list(PRIORS)}")
    if not cfg.priors:
        raise config.ConfigError("scaling: give at least one prior")
    if not all(str(k).isdigit() and 0 < s < math.inf for k, s in cfg.prior_scale.items()):
        raise config.ConfigError(
            f"scaling: prior_scale maps training-set sizes to positive scales, e.g. "
            f"prior_scale = {{ 50 = 8.0, 1000 = 2.0 }}; got {cfg.prior_scale}"
        )
    if "width_scaled" in cfg.priors and (
        missing := [n for n in cfg.n_train if str(n) not in cfg.prior_scale]
    ):
        raise config.ConfigError(
            f"scaling: the width-scaled prior needs a scale for every N in n_train; prior_scale "
            f"has none for {missing} (e.g. --set 'prior_scale={{ {missing[0]} = 8.0 }}')"
        )
    if (task := problems.get(cfg.problem).task) != "categorical":
        raise config.ConfigError(f"scaling: {cfg.problem!r} is a {task} problem, not a K-class one")


EXPERIMENT = Experiment(
    name="scaling",
    schema=Config,
    config_file="scaling.toml",
    # the item names the unit's own scale, so another N's scale recomputes nothing here
    units=lambda cfg: [
        (f"{p}-w{w}-n{n}", (p, w, n, unit_scale(cfg, p, n)))
        for p in cfg.priors
        for n in cfg.n_train
        for w in cfg.widths
    ],
    compute=compute,
    render=scaling_report.render,
    code=CODE,
    # the backend too: the MAP and the estimators of a unit are computed on it
    unit_settings=lambda cfg: (
        dataclasses.replace(
            cfg,
            seeds=(),
            widths=(),
            n_train=(),
            priors=(),
            prior_scale={},
            run_missing=True,
            reference_store="",
            max_hours_per_chain=0.0,  # decides what is sampled, not how
        ),
        jax.default_backend(),
    ),
    check=check,
    description=__doc__.split("\n\n")[0],
    # a size judged too slow may have been timed under load: the next run times it again
    cacheable=lambda arrays: bool(arrays["sampled"]),
)

if __name__ == "__main__":
    run(EXPERIMENT)
