"""Convergence diagnostics of MCMC chains and the gate a reference posterior must pass.

Vehtari et al. (2021): rank-normalised split R-hat (the max of bulk and folded) and bulk ESS, per
quantity, on every parameter and on the predictive probabilities at a fixed subset of the
evaluation inputs (``diagnostic_indices``); plus divergences, acceptance rate, step size and
tree depth. ``diagnose`` is ``ok`` when R-hat <= ``max_rhat``, bulk ESS >= ``min_ess`` and at
most ``max_divergences`` transitions diverged, over the quantities ``McmcConfig.gate`` names;
otherwise its ``failures`` say what to change.
"""

import math
from typing import NamedTuple

import jax
import numpy as np
from scipy import stats

from gnuq.baselines.sampler import Chains, McmcConfig


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
        ess = _ess(bulk)
    rhat = np.where(constant, 1.0, rhat)
    ess = np.where(constant, float(split.shape[0] * half), ess)
    return rhat, ess


def _ess(a: np.ndarray) -> np.ndarray:
    """ESS of ``[chains, samples, Q]`` by Geyer's initial monotone sequence, step for step as
    ``blackjax.diagnostics.effective_sample_size`` (Stan's estimator; tested against it) computes
    it, in numpy: no program to compile for every new shape of draws. 0 where a quantity does not
    vary within the chains, NaN where a draw is NaN."""
    m, n, q = a.shape
    if n < 2:
        raise ValueError(f"ESS needs at least 2 draws per (split) chain, got {n}")
    mean = a.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()  # zero padding: the linear, not circular, covariance
    spectrum = np.fft.rfft(a - mean, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n
    mean_acov = acov.mean(axis=0)  # [n, Q]
    var0 = mean_acov[0] * n / (n - 1)
    varies = np.any(a != a[:, :1], axis=(0, 1))
    degenerate = np.isfinite(var0) & (~varies | (var0 <= 0))
    var_plus = var0 * (n - 1) / n + (mean[:, 0].var(axis=0, ddof=1) if m > 1 else 0.0)
    var_plus = np.where(degenerate, 1.0, var_plus)
    rho = np.concatenate([np.ones((1, q)), 1 - (var0 - mean_acov[1 : n - n % 2]) / var_plus])
    even, odd = rho[0::2], rho[1::2]
    t_max, cols = len(even), np.arange(q)
    positive = np.cumprod(even + odd > 0, axis=0).astype(bool)  # Geyer's initial positive run
    after = np.maximum(positive.sum(axis=0) - 1, 0) + 1  # the pair after the run
    inside = after < t_max
    keep_even = positive.copy()
    keep_even[after[inside], cols[inside]] = even[after[inside], cols[inside]] > 0
    even, odd = np.where(keep_even, even, 0.0), np.where(positive, odd, 0.0)
    pairs = even + odd
    monotone = np.minimum.accumulate(pairs, axis=0)  # Geyer's initial monotone sequence
    lowered = pairs > np.concatenate([pairs[:1], monotone[:-1]])
    even = np.where(lowered, monotone / 2, even)
    tau = -1 + 2 * monotone.sum(axis=0) - even[np.minimum(after, t_max - 1), cols]
    ess = m * n / np.maximum(tau, 1 / np.log10(m * n))
    ess = np.where(degenerate, 0.0, ess)
    return np.where(np.any(np.isnan(a), axis=(0, 1)), np.nan, ess)


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


def diagnostic_indices(n: int, count: int) -> np.ndarray:
    """A fixed, evenly spaced subset of ``count`` of ``n`` evaluation inputs (no key needed)."""
    if n <= count:
        return np.arange(n)
    return np.linspace(0, n - 1, count).round().astype(int)
