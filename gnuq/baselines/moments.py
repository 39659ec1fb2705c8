"""Predictive moments over posterior draws, streamed: never one ``[S, N, K]`` array.

Per evaluation input x and output k, over draws theta_s (paper Sec. 4.1):

    mean = E_s[p_k(x | theta_s)],   epistemic = Var_s[p_k],   aleatoric = E_s[p_k (1 - p_k)]

Draws are summarised a group at a time (``draw_moments``) and the summaries merged in float64 with
Chan et al.'s pairwise update (``merge_moments``), so memory holds one group. The MCMC reference,
its streamed variant and the sampled Laplace predictive all accumulate this way.
"""

from typing import NamedTuple

import jax
import numpy as np

from gnuq.types import Array, Params


class Moments(NamedTuple):
    """A summary of ``count`` draws of predictions, each field ``[N, K]``."""

    count: int
    mean: Array  # E_s[p]
    m2: Array  # sum_s (p_s - mean)^2
    ale: Array  # E_s[p (1 - p)]

    @property
    def variance(self) -> Array:
        return self.m2 / self.count


def draw_moments(draws: Array) -> Moments:
    """The ``Moments`` of ``draws [S, ...]`` over the leading axis, in the draws' own precision;
    numpy and JAX arrays alike (inside ``jit`` the count comes back as an array)."""
    mean = draws.mean(axis=0)
    return Moments(
        draws.shape[0], mean, ((draws - mean) ** 2).sum(axis=0), (draws * (1 - draws)).mean(axis=0)
    )


def merge_moments(a: Moments | None, b: Moments) -> Moments:
    """Merge the summaries of two disjoint sets of draws (Chan et al.'s pairwise update; pass
    float64 arrays); ``a`` may be None."""
    if a is None:
        return b
    total = a.count + b.count
    delta = b.mean - a.mean
    return Moments(
        total,
        a.mean + delta * b.count / total,
        a.m2 + b.m2 + delta**2 * a.count * b.count / total,
        a.ale + (b.ale - a.ale) * b.count / total,
    )


def predictive_moments(
    predict_fn, positions: Params, x: Array, sample_chunk: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance and mean of p(1 - p) of ``predict_fn(params, x) [N, K]`` over all draws.

    ``positions`` leaves are ``[chains, samples, ...]``; draws are processed ``sample_chunk`` at
    a time on the device and their summaries merged in float64, so memory is one chunk.
    """
    flat = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), positions)
    n_draws = jax.tree.leaves(flat)[0].shape[0]

    @jax.jit
    def chunk_moments(p: Params) -> Moments:
        return draw_moments(jax.vmap(lambda q: predict_fn(q, x))(p))

    moments = None
    for start in range(0, n_draws, sample_chunk):
        part = jax.tree.map(lambda a, s=start: a[s : s + sample_chunk], flat)
        batch = chunk_moments(part)
        batch = Moments(int(batch.count), *(np.asarray(a, np.float64) for a in batch[1:]))
        moments = merge_moments(moments, batch)
    return moments.mean, moments.variance, moments.ale
