"""The reference posterior: BlackJAX NUTS (or HMC) on the negative log posterior of ``gnuq.train``.

The potential energy is ``train.neg_log_posterior``, the very function MAP training minimises
(``log_posterior``), so the sampler and the point estimate never disagree about the model. The
pieces live beside this module, each usable alone:

- ``gnuq.baselines.sampler``: ``McmcConfig``, ``initial_positions`` and ``sample`` (window
  adaptation + NUTS/HMC inside ``lax.scan`` under ``jit``; sequential, vmapped or per-device
  chains);
- ``gnuq.baselines.moments``: the predictive moments, streamed over chunks of draws;
- ``gnuq.baselines.diagnostics``: split R-hat, bulk ESS and the gate.

The reference moments, per evaluation input x and output k (paper Sec. 4.1):
    epistemic = Var_s[p_k(x | theta_s)],   aleatoric = E_s[p_k (1 - p_k)]   (classification)
    epistemic = Var_s[f(x | theta_s)],     aleatoric = noise variance       (regression)
accumulated over chunks of samples in float64 (Chan's parallel update), never as one
``[S, N, K]`` array. ``reference`` warns, and its ``diagnostics.ok`` is False, when the R-hat /
ESS / divergence gate fails.
"""

import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from gnuq import likelihoods, train
from gnuq.baselines.diagnostics import (
    Diagnostics,
    diagnose,
    diagnostic_indices,
    split_rhat_and_bulk_ess,
)
from gnuq.baselines.moments import Moments, block_moments, merge_blocks, predictive_moments
from gnuq.baselines.sampler import (
    Chains,
    McmcConfig,
    initial_positions,
    resolve_chain_method,
    sample,
)
from gnuq.types import ApplyFn, Array, Params, PRNGKey

__all__ = [  # the sampler's, moments' and diagnostics' names most users want, from here too
    "Chains",
    "Diagnostics",
    "McmcConfig",
    "Reference",
    "diagnose",
    "finish_reference",
    "initial_positions",
    "log_posterior",
    "posterior_chains",
    "predictive_moments",
    "reference",
    "resolve_chain_method",
    "sample",
    "split_rhat_and_bulk_ess",
    "summarise",
]

DEFAULT_CONFIG = McmcConfig()  # frozen: safe as a default argument


class Reference(NamedTuple):
    """Posterior predictive moments over the evaluation inputs, shapes ``[N, K]``."""

    mean: Array  # E_s[p_k] (or E_s[f])
    epistemic: Array  # Var_s[p_k] (or Var_s[f])
    aleatoric: Array  # E_s[p_k (1 - p_k)] (or the noise variance)
    diagnostics: Diagnostics
    chains: Chains
    # moments of blocks of consecutive draws, [chains * config.moment_blocks, N, K]: resample
    # them for the Monte Carlo error (None where the draws were merged without blocks)
    blocks: Moments | None = None


def log_posterior(
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    x_train: Array,
    y_train: Array,
    prior_precision: float,
) -> Callable[[Params], Array]:
    """``theta -> log p(theta | data)`` up to a constant: minus ``train.neg_log_posterior``, the
    objective MAP training minimises, on the whole training set."""
    potential = train.neg_log_posterior(apply_fn, likelihood, prior_precision)

    def logdensity(p: Params) -> Array:
        return -potential(p, x_train, y_train)

    return logdensity


def posterior_chains(
    key: PRNGKey,
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    x_train: Array,
    y_train: Array,
    map_params: Params,
    prior_precision: float,
    config: McmcConfig = DEFAULT_CONFIG,
    starts: Params | None = None,
) -> Chains:
    """Warm up and sample ``config.num_chains`` chains from the posterior whose negative log
    density is ``train.neg_log_posterior`` (the objective MAP training minimises), started as
    ``config.init`` says from ``map_params``, or chain i from ``starts[i]`` (leaves
    ``[chains, ...]``, e.g. MAPs from independent initialisations: chains that start apart can
    reveal modes that chains started together never leave)."""
    logdensity = log_posterior(apply_fn, likelihood, x_train, y_train, prior_precision)
    k_init, k_sample = jax.random.split(key)
    if starts is None:
        starts = initial_positions(k_init, map_params, config, prior_precision)
    elif jax.tree.leaves(starts)[0].shape[0] != config.num_chains:
        raise ValueError(
            f"starts has {jax.tree.leaves(starts)[0].shape[0]} positions for "
            f"{config.num_chains} chains (mcmc.num_chains)"
        )
    return sample(k_sample, logdensity, starts, config)


def reference(
    key: PRNGKey,
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    x_train: Array,
    y_train: Array,
    map_params: Params,
    x_eval: Array,
    prior_precision: float,
    config: McmcConfig = DEFAULT_CONFIG,
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
    config: McmcConfig = DEFAULT_CONFIG,
) -> Reference:
    """Predictive moments of ``chains`` on ``x_eval [N, ...]`` (per block of
    ``config.moment_blocks`` per chain, streamed over chunks of ``config.sample_chunk`` samples)
    and the diagnostics of the R-hat / ESS gate."""

    def predict(p, x):
        return likelihood.predict(apply_fn(p, x))

    blocks = block_moments(
        predict, chains.positions, x_eval, config.moment_blocks, config.sample_chunk
    )
    total = merge_blocks(blocks)
    subset = x_eval[diagnostic_indices(len(x_eval), config.diagnostic_inputs)]
    preds = jax.jit(jax.vmap(jax.vmap(lambda p: predict(p, subset))))(chains.positions)
    preds = np.asarray(preds).reshape(*np.asarray(preds).shape[:2], -1)
    return finish_reference(
        likelihood, total.mean, total.variance, total.ale, chains, preds, config, blocks
    )


def finish_reference(
    likelihood: likelihoods.Likelihood,
    mean: np.ndarray,
    var: np.ndarray,
    ale: np.ndarray,
    chains: Chains,
    predictions: np.ndarray,
    config: McmcConfig,
    blocks: Moments | None = None,
) -> Reference:
    """The ``Reference`` of the moments ``[N, K]``, gated on ``chains`` and the ``predictions
    [chains, samples, Q]`` at the diagnostic inputs: warns when the gate fails; for a Gaussian
    likelihood the aleatoric part is the noise variance (``ale`` holds moments of f)."""
    diagnostics = diagnose(chains, predictions, config)
    if not diagnostics.ok:
        warnings.warn(
            "MCMC reference failed its gate: " + "; ".join(diagnostics.failures),
            RuntimeWarning,
            stacklevel=3,
        )
    if likelihood.name == "gaussian":
        noise = np.nan if likelihood.noise_var is None else likelihood.noise_var
        ale = np.full_like(mean, noise)
    return Reference(mean, var, ale, diagnostics, chains, blocks)
