"""The reference posterior: BlackJAX NUTS (or HMC) on the negative log posterior of ``gnuq.train``.

The potential energy is ``train.neg_log_posterior``, the very function MAP training minimises, so
the sampler and the point estimate never disagree about the model. Each chain runs Stan-style
window adaptation (dual-averaging step size + diagonal mass matrix) and then samples, both inside
``lax.scan`` under ``jit``, with positions kept as the params pytree.

Chains (``chain_method``):
- ``"sequential"``: one compiled chain run chain after chain (fastest on a CPU: vmapped NUTS
  chains advance in lock-step at the deepest tree of any chain);
- ``"vmap"``: all chains in one vmapped program (right for a GPU);
- ``"devices"``: chains spread over ``jax.devices()`` with ``pmap`` (several CPU host devices via
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set before JAX is imported);
- ``"auto"``: ``devices`` when there are several, else ``vmap`` on an accelerator and
  ``sequential`` on a CPU.

The reference moments, per evaluation input x and output k (paper Sec. 4.1):
    epistemic = Var_s[p_k(x | theta_s)],   aleatoric = E_s[p_k (1 - p_k)]   (classification)
    epistemic = Var_s[f(x | theta_s)],     aleatoric = noise variance       (regression)
accumulated over chunks of samples in float64 (Chan's parallel update), never as one
``[S, N, K]`` array.

Diagnostics (Vehtari et al. 2021): rank-normalised split R-hat (max of bulk and folded) and bulk
ESS, on every parameter and on the predictive probabilities at a fixed subset of the evaluation
inputs; divergences; acceptance rate; step size; tree depth. ``ok`` requires R-hat <= ``max_rhat``,
bulk ESS >= ``min_ess`` and at most ``max_divergences`` divergent transitions.
"""

import dataclasses
import math
import warnings
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.base import get_filter_adapt_info_fn
from scipy import stats
from tqdm.auto import tqdm

from gnuq import likelihoods, train
from gnuq.types import ApplyFn, Array, Params, PRNGKey

ALGORITHMS = ("nuts", "hmc")
CHAIN_METHODS = ("auto", "sequential", "vmap", "devices")
INITS = ("map", "prior")


@dataclasses.dataclass(frozen=True)
class McmcConfig:
    """Sampler settings (the ``mcmc`` section of the experiment TOMLs)."""

    algorithm: str = "nuts"
    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    num_integration_steps: int = 16  # hmc only
    max_tree_depth: int = 10  # nuts only
    target_acceptance_rate: float = 0.8
    init: str = "map"  # "map": MAP + init_jitter * N(0, I); "prior": a draw from the prior
    init_jitter: float = 0.01
    chain_method: str = "auto"
    max_rhat: float = 1.01
    min_ess: float = 400.0
    max_divergences: int = 0
    diagnostic_inputs: int = 256  # evaluation inputs whose predictions are diagnosed
    # which quantities the R-hat / ESS gate reads: "all" (parameters and predictions) or
    # "predictive" (predictions only; parameters are still reported). MLP parameters are not
    # identifiable (weakly determined hidden units drift along prior-only directions) while the
    # predictions the experiments use are; function-space R-hat is the usual BNN check.
    gate: str = "all"
    sample_chunk: int = 100  # samples per chunk of the streaming moments
    progress: bool = True

    def __post_init__(self):
        for name, allowed in [
            ("algorithm", ALGORITHMS),
            ("chain_method", CHAIN_METHODS),
            ("init", INITS),
            ("gate", ("all", "predictive")),
        ]:
            if getattr(self, name) not in allowed:
                raise ValueError(f"mcmc.{name}={getattr(self, name)!r}; choose one of {allowed}")
        for name in ("num_warmup", "num_samples", "num_chains", "num_integration_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"mcmc.{name} must be at least 1, got {getattr(self, name)}")
        if self.num_chains < 2:
            warnings.warn("one chain: R-hat can only see within-chain drift", stacklevel=2)
        if not 0 < self.target_acceptance_rate < 1:
            raise ValueError("mcmc.target_acceptance_rate must lie in (0, 1)")


class Chains(NamedTuple):
    """Posterior draws: ``positions`` leaves are ``[chains, samples, *param.shape]``."""

    positions: Params
    divergent: Array  # [chains, samples] bool
    acceptance_rate: Array  # [chains, samples]
    num_steps: Array  # [chains, samples] leapfrog steps (gradient evaluations) per transition
    step_size: Array  # [chains] adapted step size
    warmup_steps: Array  # [chains] leapfrog steps spent in warm-up


class Diagnostics(NamedTuple):
    rhat_max: float  # over the gated quantities (``McmcConfig.gate``)
    ess_bulk_min: float
    divergences: int
    rhat_max_params: float
    ess_bulk_min_params: float
    rhat_max_predictive: float
    ess_bulk_min_predictive: float
    acceptance_rate: float  # mean over chains and samples
    step_size: tuple[float, ...]  # per chain
    mean_tree_depth: float  # NUTS: log2(leapfrog steps + 1); HMC: log2(fixed steps + 1)
    ok: bool
    failures: tuple[str, ...]  # why not ok, with what to change

    def row(self) -> dict:
        """The results-contract fields (DESIGN.md)."""
        return {
            "rhat_max": self.rhat_max,
            "ess_bulk_min": self.ess_bulk_min,
            "divergences": self.divergences,
            "ok": self.ok,
        }


class Reference(NamedTuple):
    """Posterior predictive moments over the evaluation inputs, shapes ``[N, K]``."""

    mean: Array  # E_s[p_k] (or E_s[f])
    epistemic: Array  # Var_s[p_k] (or Var_s[f])
    aleatoric: Array  # E_s[p_k (1 - p_k)] (or the noise variance)
    diagnostics: Diagnostics
    chains: Chains


# ---------------------------------------------------------------------------------------------
# sampling


def initial_positions(
    key: PRNGKey, map_params: Params, config: McmcConfig, prior_precision: float
) -> Params:
    """``[chains, ...]`` starting points: MAP + jitter, or draws from the N(0, 1/lambda) prior."""
    leaves, treedef = jax.tree.flatten(map_params)
    keys = jax.random.split(key, len(leaves))
    shape = (config.num_chains,)
    if config.init == "map":
        out = [
            leaf + config.init_jitter * jax.random.normal(k, shape + leaf.shape, leaf.dtype)
            for leaf, k in zip(leaves, keys, strict=True)
        ]
    else:
        scale = 1.0 / math.sqrt(prior_precision)
        out = [
            scale * jax.random.normal(k, shape + leaf.shape, leaf.dtype)
            for leaf, k in zip(leaves, keys, strict=True)
        ]
    return jax.tree.unflatten(treedef, out)


def sample(key: PRNGKey, logdensity_fn, positions: Params, config: McmcConfig) -> Chains:
    """Warm up and sample ``config.num_chains`` chains from ``logdensity_fn``.

    ``positions`` leaves are ``[chains, ...]``. Chain i uses ``jax.random.split(key, chains)[i]``
    whatever ``chain_method``, so the methods draw the same chains.
    """
    keys = jax.random.split(key, config.num_chains)
    method, groups, run = chain_groups(_chain_program(logdensity_fn, config), config)
    total = config.num_warmup + config.num_samples
    bar = tqdm(
        total=total * len(groups),
        desc=f"{config.algorithm} {config.num_chains} chains ({method})",
        disable=not config.progress,
        leave=False,
        mininterval=2.0,
    )
    outputs = []
    for g, group in enumerate(groups):
        _PROGRESS.update(bar=bar, base=g * total)
        idx = np.asarray(group)
        out = run(keys[idx], jax.tree.map(lambda a, i=idx: a[i], positions))
        jax.block_until_ready(out)
        bar.update((g + 1) * total - bar.n)
        outputs.append(out)
    bar.close()
    return jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *outputs)


def chain_groups(one_chain, config: McmcConfig) -> tuple[str, list[list[int]], object]:
    """How ``config.num_chains`` chains of ``one_chain`` run: ``(method, groups, run)``.

    ``run`` takes the arguments of one group with a leading chain axis and returns its outputs
    likewise; ``groups`` lists the chain indices of each call.
    """
    method = resolve_chain_method(config.chain_method)
    if method == "sequential":
        single = jax.jit(one_chain)

        def run(*args):
            out = single(*jax.tree.map(lambda a: a[0], args))
            return jax.tree.map(lambda a: a[None], out)

        return method, [[i] for i in range(config.num_chains)], run
    if method == "vmap":
        return method, [list(range(config.num_chains))], jax.jit(jax.vmap(one_chain))
    n_dev = jax.local_device_count()
    groups = [
        list(range(i, min(i + n_dev, config.num_chains)))
        for i in range(0, config.num_chains, n_dev)
    ]
    return method, groups, jax.pmap(one_chain)


def resolve_chain_method(method: str) -> str:
    if method != "auto":
        if method == "devices" and jax.local_device_count() < 2:
            warnings.warn(
                "chain_method='devices' with a single device runs chains one at a time",
                stacklevel=3,
            )
        return method
    if jax.local_device_count() > 1:
        return "devices"
    return "sequential" if jax.default_backend() == "cpu" else "vmap"


_PROGRESS: dict = {}


def _report(step) -> None:
    bar = _PROGRESS.get("bar")
    if bar is not None:  # update() honours tqdm's mininterval, so logs stay short
        bar.update(max(0, _PROGRESS["base"] + int(np.max(step)) - bar.n))


def algorithm_and_extra(config: McmcConfig) -> tuple[object, dict]:
    """The BlackJAX algorithm of ``config`` and its fixed keyword arguments."""
    if config.algorithm == "nuts":
        return blackjax.nuts, {"max_num_doublings": config.max_tree_depth}
    return blackjax.hmc, {"num_integration_steps": config.num_integration_steps}


def warmup_program(logdensity_fn, config: McmcConfig):
    """``(key, position) -> (state, tuned, warmup leapfrog steps)`` for one chain: window
    adaptation of the step size and a diagonal mass matrix; ``tuned`` holds every keyword of
    the algorithm (``step_size``, ``inverse_mass_matrix`` and the fixed ones)."""
    algorithm, extra = algorithm_and_extra(config)

    def warm(key: PRNGKey, position: Params):
        warmup = blackjax.window_adaptation(
            algorithm,
            logdensity_fn,
            target_acceptance_rate=config.target_acceptance_rate,
            # keep only the leapfrog counts of the warm-up, not its per-step states
            adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
            **extra,
        )
        (state, tuned), info = warmup.run(key, position, num_steps=config.num_warmup)
        return state, tuned, jnp.sum(info.info.num_integration_steps)

    return warm


def _chain_program(logdensity_fn, config: McmcConfig):
    """``(key, position) -> Chains`` for one chain (no leading chain axis)."""
    algorithm, _ = algorithm_and_extra(config)
    warm = warmup_program(logdensity_fn, config)
    every = max(1, config.num_samples // 50)

    def one_chain(key: PRNGKey, position: Params) -> Chains:
        k_warm, k_sample = jax.random.split(key)
        state, tuned, warm_steps = warm(k_warm, position)
        kernel = algorithm(logdensity_fn, **tuned).step  # tuned includes extra

        def step(state, xs):
            i, k = xs
            state, info = kernel(k, state)
            jax.lax.cond(
                i % every == every - 1,
                lambda: jax.debug.callback(_report, config.num_warmup + i + 1),
                lambda: None,
            )
            out = (state.position, info.is_divergent, info.acceptance_rate)
            return state, (*out, info.num_integration_steps)

        steps = (jnp.arange(config.num_samples), jax.random.split(k_sample, config.num_samples))
        _, (pos, div, acc, n_steps) = jax.lax.scan(step, state, steps)
        return Chains(pos, div, acc, n_steps, tuned["step_size"], warm_steps)

    return one_chain


# ---------------------------------------------------------------------------------------------
# moments and diagnostics


def predictive_moments(
    predict_fn, positions: Params, x: Array, sample_chunk: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance and mean of p(1 - p) of ``predict_fn(params, x) [N, K]`` over all draws.

    ``positions`` leaves are ``[chains, samples, ...]``; draws are processed ``sample_chunk`` at
    a time and merged in float64 (Chan et al.'s pairwise update), so memory is one chunk.
    """
    flat = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), positions)
    n_draws = jax.tree.leaves(flat)[0].shape[0]

    @jax.jit
    def chunk_stats(p):
        out = jax.vmap(lambda q: predict_fn(q, x))(p)  # [s, N, K]
        mean = jnp.mean(out, axis=0)
        return mean, jnp.sum((out - mean) ** 2, axis=0), jnp.mean(out * (1 - out), axis=0)

    moments = None
    for start in range(0, n_draws, sample_chunk):
        part = jax.tree.map(lambda a, s=start: a[s : s + sample_chunk], flat)
        n_b = jax.tree.leaves(part)[0].shape[0]
        batch = (n_b, *(np.asarray(a, np.float64) for a in chunk_stats(part)))
        moments = merge_moments(moments, batch)
    count, mean, m2, ale = moments
    return mean, m2 / count, ale


def merge_moments(a: tuple | None, b: tuple) -> tuple:
    """Merge two ``(count, mean, sum of squared deviations, mean of p(1 - p))`` summaries of
    disjoint sets of draws (Chan et al.'s pairwise update, float64); ``a`` may be None."""
    if a is None:
        return b
    n_a, mean_a, m2_a, ale_a = a
    n_b, mean_b, m2_b, ale_b = b
    total = n_a + n_b
    delta = mean_b - mean_a
    return (
        total,
        mean_a + delta * n_b / total,
        m2_a + m2_b + delta**2 * n_a * n_b / total,
        ale_a + (ale_b - ale_a) * n_b / total,
    )


def split_rhat_and_bulk_ess(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat (max of bulk and folded) and bulk ESS, per quantity.

    ``draws`` is ``[chains, samples, Q]``. A quantity constant over every draw is converged by
    definition: R-hat 1 and ESS = number of draws (rank statistics are undefined for it).
    """
    draws = np.asarray(draws, np.float64)
    _, s, q = draws.shape
    half = s // 2
    split = np.concatenate([draws[:, :half], draws[:, s - half :]], axis=0)  # [2c, half, Q]
    constant = np.ptp(split.reshape(-1, q), axis=0) == 0

    def rank_normal(a):
        ranks = stats.rankdata(a.reshape(-1, q), axis=0).reshape(a.shape)
        return stats.norm.ppf((ranks - 0.375) / (a.shape[0] * a.shape[1] + 0.25))

    bulk = rank_normal(split)
    folded = rank_normal(np.abs(split - np.median(split.reshape(-1, q), axis=0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        rhat = np.maximum(_rhat(bulk), _rhat(folded))
        ess = np.asarray(blackjax.diagnostics.effective_sample_size(jnp.asarray(bulk)))
    rhat = np.where(constant, 1.0, rhat)
    ess = np.where(constant, float(split.shape[0] * half), ess)
    return rhat, ess


def _rhat(a: np.ndarray) -> np.ndarray:
    """Gelman-Rubin R-hat of ``[chains, samples, Q]`` (the chains already split)."""
    n = a.shape[1]
    within = np.mean(np.var(a, axis=1, ddof=1), axis=0)
    between = n * np.var(np.mean(a, axis=1), axis=0, ddof=1)
    return np.sqrt(((n - 1) / n * within + between / n) / within)


def diagnose(chains: Chains, predictions: np.ndarray | None, config: McmcConfig) -> Diagnostics:
    """Gate the chains on R-hat, bulk ESS and divergences; ``predictions`` is ``[C, S, Q]``."""
    params = np.concatenate(
        [np.asarray(a).reshape(*a.shape[:2], -1) for a in jax.tree.leaves(chains.positions)],
        axis=2,
    )
    rhat_p, ess_p = split_rhat_and_bulk_ess(params)
    if predictions is not None:
        rhat_q, ess_q = split_rhat_and_bulk_ess(predictions)
    else:
        rhat_q, ess_q = np.array([1.0]), np.array([np.inf])
    divergences = int(np.sum(np.asarray(chains.divergent)))
    gated = {"parameters": (rhat_p, ess_p)}
    if predictions is not None:
        gated = {"predictions": (rhat_q, ess_q)} | ({} if config.gate == "predictive" else gated)
    rhat_max = max(float(np.nanmax(r)) for r, _ in gated.values())
    ess_min = min(float(np.nanmin(e)) for _, e in gated.values())
    if any(np.isnan(r).any() for r, _ in gated.values()):
        rhat_max = math.inf  # a chain stuck at one value: never call that converged
    failures = []
    worst = max(gated, key=lambda k: float(np.nanmax(gated[k][0])))
    if rhat_max > config.max_rhat:
        advice = "run more warm-up and samples"
        if config.init != "map":
            advice += ", or start the chains from the MAP (mcmc.init='map')"
        failures.append(
            f"R-hat {rhat_max:.3f} > {config.max_rhat} (worst on the {worst}): chains disagree; "
            + advice
        )
    if ess_min < config.min_ess:
        failures.append(
            f"bulk ESS {ess_min:.0f} < {config.min_ess:.0f}: raise mcmc.num_samples "
            f"(now {config.num_samples}) or mcmc.num_chains"
        )
    if divergences > config.max_divergences:
        failures.append(
            f"{divergences} divergent transitions > {config.max_divergences}: raise "
            f"mcmc.target_acceptance_rate (now {config.target_acceptance_rate})"
        )
    n_steps = np.asarray(chains.num_steps, np.float64)
    return Diagnostics(
        rhat_max=rhat_max,
        ess_bulk_min=ess_min,
        divergences=divergences,
        rhat_max_params=float(np.nanmax(rhat_p)),
        ess_bulk_min_params=float(np.nanmin(ess_p)),
        rhat_max_predictive=float(np.nanmax(rhat_q)),
        ess_bulk_min_predictive=float(np.nanmin(ess_q)),
        acceptance_rate=float(np.mean(np.asarray(chains.acceptance_rate))),
        step_size=tuple(float(s) for s in np.asarray(chains.step_size)),
        mean_tree_depth=float(np.mean(np.log2(n_steps + 1))),
        ok=not failures,
        failures=tuple(failures),
    )


# ---------------------------------------------------------------------------------------------
# the reference posterior of a model


def posterior_chains(
    key: PRNGKey,
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    x_train: Array,
    y_train: Array,
    map_params: Params,
    prior_precision: float,
    config: McmcConfig = McmcConfig(),
) -> Chains:
    """Warm up and sample ``config.num_chains`` chains from the posterior whose negative log
    density is ``train.neg_log_posterior`` (the objective MAP training minimises), started as
    ``config.init`` says from ``map_params``."""
    potential = train.neg_log_posterior(apply_fn, likelihood, prior_precision)

    def logdensity(p):
        return -potential(p, x_train, y_train)

    k_init, k_sample = jax.random.split(key)
    init = initial_positions(k_init, map_params, config, prior_precision)
    return sample(k_sample, logdensity, init, config)


def reference(
    key: PRNGKey,
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    x_train: Array,
    y_train: Array,
    map_params: Params,
    x_eval: Array,
    prior_precision: float,
    config: McmcConfig = McmcConfig(),
) -> Reference:
    """Sample the posterior of ``apply_fn`` given the data and return predictive moments on
    ``x_eval`` with diagnostics; warns (and sets ``ok=False``) when the gate fails.

    ``summarise(posterior_chains(...), ...)``: call the two yourself to keep or reuse the draws.
    """
    chains = posterior_chains(
        key, apply_fn, likelihood, x_train, y_train, map_params, prior_precision, config
    )
    return summarise(apply_fn, likelihood, chains, x_eval, config)


def summarise(
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    chains: Chains,
    x_eval: Array,
    config: McmcConfig = McmcConfig(),
) -> Reference:
    """Predictive moments of ``chains`` on ``x_eval [N, ...]`` (streamed over chunks of
    ``config.sample_chunk`` samples) and the diagnostics of the R-hat / ESS gate."""

    def predict(p, x):
        return likelihood.predict(apply_fn(p, x))

    mean, var, ale = predictive_moments(predict, chains.positions, x_eval, config.sample_chunk)
    subset = x_eval[diagnostic_indices(len(x_eval), config.diagnostic_inputs)]
    preds = jax.jit(jax.vmap(jax.vmap(lambda p: predict(p, subset))))(chains.positions)
    preds = np.asarray(preds).reshape(*np.asarray(preds).shape[:2], -1)
    return finish_reference(likelihood, mean, var, ale, diagnose(chains, preds, config), chains)


def finish_reference(
    likelihood: likelihoods.Likelihood, mean, var, ale, diagnostics: Diagnostics, chains: Chains
) -> Reference:
    """The ``Reference`` of the moments: warns when the gate failed, and for a Gaussian
    likelihood the aleatoric part is the noise variance (``ale`` holds moments of f)."""
    if not diagnostics.ok:
        warnings.warn(
            "MCMC reference failed its gate: " + "; ".join(diagnostics.failures),
            RuntimeWarning,
            stacklevel=3,
        )
    if likelihood.name == "gaussian":
        noise = np.nan if likelihood.noise_var is None else likelihood.noise_var
        ale = np.full_like(mean, noise)
    return Reference(mean, var, ale, diagnostics, chains)


def diagnostic_indices(n: int, count: int) -> np.ndarray:
    """A fixed, evenly spaced subset of ``count`` of ``n`` evaluation inputs (no key needed)."""
    if n <= count:
        return np.arange(n)
    return np.linspace(0, n - 1, count).round().astype(int)
