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
    total = merge_blocks(block_moments(predict_fn, positions, x, 1, sample_chunk))
    return total.mean, total.variance, total.ale


def block_moments(
    predict_fn, positions: Params, x: Array, blocks_per_chain: int, sample_chunk: int = 100
) -> Moments:
    """The ``Moments`` of each block of consecutive draws of one chain, stacked: ``count [B]``
    and fields ``[B, N, K]``, B = chains * blocks_per_chain, chain-major.

    Blocks of consecutive draws are nearly independent of one another when they are much longer
    than the chain's autocorrelation time: resampling them (``merge_blocks`` with bootstrap
    multiplicities) gives the Monte Carlo error of any statistic of the moments.
    """
    n_chains, n_samples = jax.tree.leaves(positions)[0].shape[:2]
    if not 1 <= blocks_per_chain <= n_samples:
        raise ValueError(
            f"blocks_per_chain must be between 1 and the {n_samples} samples per chain, got "
            f"{blocks_per_chain}"
        )

    @jax.jit
    def chunk_moments(p: Params) -> Moments:
        return draw_moments(jax.vmap(lambda q: predict_fn(q, x))(p))

    blocks = []
    for chain in range(n_chains):
        for block in np.array_split(np.arange(n_samples), blocks_per_chain):
            moments = None
            for start in range(block[0], block[-1] + 1, sample_chunk):
                stop = min(start + sample_chunk, block[-1] + 1)
                part = jax.tree.map(lambda a, c=chain, s=start, e=stop: a[c, s:e], positions)
                batch = chunk_moments(part)
                batch = Moments(int(batch.count), *(np.asarray(a, np.float64) for a in batch[1:]))
                moments = merge_moments(moments, batch)
            blocks.append(moments)
    fields = list(zip(*blocks, strict=True))[1:]
    return Moments(np.array([b.count for b in blocks]), *[np.stack(f) for f in fields])


def merge_blocks(blocks: Moments, weights=None) -> Moments:
    """Merge stacked block summaries (``block_moments``) into one, each block counted
    ``weights [B]`` times (default once; bootstrap multiplicities for a resample), or into
    ``R`` merged summaries at once for ``weights [R, B]`` (fields ``[R, N, K]``, count
    ``[R, 1, 1]``; memory R * B * N * K floats, so pass a few hundred rows at a time):

        n = sum_b w_b n_b,  mean = sum_b w_b n_b m_b / n,
        M2 = sum_b w_b (M2_b + n_b (m_b - mean)^2),  ale = sum_b w_b n_b ale_b / n
    """
    counts = np.asarray(blocks.count, np.float64)
    w = np.ones_like(counts) if weights is None else np.asarray(weights, np.float64)
    wn = w * counts  # [B] or [R, B]
    n = wn.sum(axis=-1)
    fields = [np.asarray(f, np.float64) for f in blocks[1:]]
    flat = [f.reshape(len(counts), -1) for f in fields]  # [B, N*K]
    mean = np.tensordot(wn, flat[0], axes=(-1, 0)) / n[..., None]
    spread = np.stack([(flat[0] - m) ** 2 for m in np.atleast_2d(mean)])  # [R, B, N*K]
    m2 = np.tensordot(w, flat[1], axes=(-1, 0)) + np.einsum(
        "...b,...bj->...j", wn, spread.reshape(*mean.shape[:-1], *spread.shape[1:])
    )
    ale = np.tensordot(wn, flat[2], axes=(-1, 0)) / n[..., None]
    shape = (*mean.shape[:-1], *fields[0].shape[1:])
    n = n.reshape(n.shape + (1,) * (len(shape) - n.ndim)) if n.ndim else n  # broadcasts
    return Moments(n, mean.reshape(shape), m2.reshape(shape), ale.reshape(shape))


def block_bootstrap(blocks: Moments, resamples: int, seed: int = 0, chunk: int = 50) -> Moments:
    """``resamples`` bootstrap replicates of the merged moments: each draws ``B`` blocks with
    replacement (``rng.multinomial``) and merges them (``merge_blocks``); fields
    ``[resamples, N, K]``. Built ``chunk`` replicates at a time to bound memory."""
    n_blocks = len(np.asarray(blocks.count))
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        weights = rng.multinomial(n_blocks, np.full(n_blocks, 1 / n_blocks), size=rows)
        parts.append(merge_blocks(blocks, weights))
    return Moments(*(np.concatenate(f) for f in zip(*parts, strict=True)))
