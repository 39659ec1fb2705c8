"""Agreement statistics between an estimate and its reference (with block-bootstrap confidence
intervals) and summaries across seeds (mean with its t interval, Welch's test). The statistics
of predicting a binary outcome from scores are in ``gnuq.detection``."""

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats


def correlations(estimate, reference) -> tuple[float, float]:
    """Pearson r and Spearman rho between two arrays of the same shape (flattened).

    Raises when either input holds a NaN/inf or is constant, where a correlation is undefined:
    such a map is a bug upstream, never a number to report.
    """
    a = np.asarray(estimate, np.float64).ravel()
    b = np.asarray(reference, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {np.shape(estimate)} vs {np.shape(reference)}")
    for name, v in (("estimate", a), ("reference", b)):
        if not np.all(np.isfinite(v)):
            raise ValueError(f"the {name} contains NaN or inf")
        if np.ptp(v) == 0:
            raise ValueError(f"the {name} is constant: its correlation is undefined")
    return float(stats.pearsonr(a, b)[0]), float(stats.spearmanr(a, b)[0])


def class_correlations(estimate, reference) -> list[tuple[int | str, float, float]]:
    """``(class, r, rho)`` between ``[N, K]`` maps: per class, then pooled over all (input,
    class) pairs as class "overall"; with one column only "overall"."""
    estimate, reference = np.asarray(estimate), np.asarray(reference)
    if estimate.ndim != 2 or estimate.shape != reference.shape:
        raise ValueError(f"need two [N, K] maps, got {estimate.shape} and {reference.shape}")
    classes = range(estimate.shape[1]) if estimate.shape[1] > 1 else []
    per_class = [(c, *correlations(estimate[:, c], reference[:, c])) for c in classes]
    return [*per_class, ("overall", *correlations(estimate, reference))]


class Agreement(NamedTuple):
    """Pearson r and Spearman rho with their bootstrap intervals ``(low, high)``."""

    pearson: float
    spearman: float
    pearson_ci: tuple[float, float]
    spearman_ci: tuple[float, float]


def grid_blocks(points, per_axis: int) -> np.ndarray:
    """Labels ``[G]`` of spatial blocks: every coordinate of ``points [G, D]`` cut into
    ``per_axis`` equal-width bins over its range, a block per occupied cell of that lattice."""
    pts = np.asarray(points, np.float64)
    pts = pts[:, None] if pts.ndim == 1 else pts
    lo, hi = pts.min(0), pts.max(0)
    width = np.where(hi > lo, (hi - lo) / per_axis, 1.0)
    bins = np.minimum(((pts - lo) / width).astype(int), per_axis - 1)
    return np.unique(bins, axis=0, return_inverse=True)[1].ravel()


def bootstrap_agreement(
    estimate,
    reference,
    cell_blocks,
    *,
    reference_replicates=None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> Agreement:
    """Pearson r and Spearman rho of ``estimate`` vs ``reference`` with percentile intervals
    from a two-way block bootstrap (``bootstrap_agreements`` of one estimate)."""
    return bootstrap_agreements(
        [estimate], reference, cell_blocks, reference_replicates=reference_replicates,
        resamples=resamples, level=level, seed=seed, chunk=chunk,
    )[0]  # fmt: skip


def bootstrap_agreements(
    estimates: Sequence,
    reference,
    cell_blocks,
    *,
    reference_replicates=None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> list[Agreement]:
    """Pearson r and Spearman rho of each of ``estimates`` vs ``reference`` with percentile
    intervals from a two-way block bootstrap (every estimate sees the same resamples, and the
    reference's ranks are computed once per resample).

    Resample i draws spatial blocks of evaluation cells with replacement (labels
    ``cell_blocks [G]``: neighbouring cells are not independent, so whole blocks move) and, when
    ``reference_replicates [R, G(, K)]`` is given (R = resamples; e.g. the reference recomputed
    from a resample of blocks of posterior draws, ``gnuq.baselines.moments.block_bootstrap``),
    compares with its row i instead of ``reference``. A cell drawn m times counts m times in
    both correlations (weighted Pearson; Spearman on weighted mid-ranks). The interval thus
    covers the grid's and the reference's Monte Carlo error; a seed's data and MAP are fixed.

    Each estimate and ``reference`` are ``[G]`` or ``[G, K]``; the K columns of a cell move
    together and are pooled, as in ``class_correlations``'s "overall".
    """
    ests = [np.asarray(e, np.float64) for e in estimates]
    ref = np.asarray(reference, np.float64)
    labels = np.asarray(cell_blocks)
    if any(e.shape != ref.shape for e in ests) or ref.shape[0] != labels.shape[0]:
        raise ValueError(
            f"estimates {[e.shape for e in ests]}, reference {ref.shape} and cell_blocks "
            f"{labels.shape} must share the leading (cell) axis, and the estimates and the "
            "reference their shape"
        )
    if reference_replicates is not None:
        reference_replicates = np.asarray(reference_replicates)
        if reference_replicates.shape[1:] != ref.shape:
            raise ValueError(
                f"reference_replicates {reference_replicates.shape} must be [R, *{ref.shape}]"
            )
        resamples = len(reference_replicates)
    points = [correlations(e, ref) for e in ests]
    per_cell = ref[0].size
    flat = [e.reshape(-1) for e in ests]
    _, index = np.unique(labels, return_inverse=True)
    n_labels = index.max() + 1
    rng = np.random.default_rng(seed)
    samples = []  # per chunk: [rows, estimates, 2]
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        tiles = rng.multinomial(n_labels, np.full(n_labels, 1 / n_labels), size=rows)
        w = np.repeat(tiles[:, index], per_cell, axis=1).astype(np.float64)  # [R, G * K]
        refs = (
            ref.reshape(-1)
            if reference_replicates is None
            else reference_replicates[start : start + rows].reshape(rows, -1).astype(np.float64)
        )
        ref_ranks = _weighted_ranks(refs, w)
        samples.append(
            np.stack(
                [
                    np.stack(
                        [
                            _weighted_pearson(e, refs, w),
                            _weighted_pearson(_weighted_ranks(e, w), ref_ranks, w),
                        ],
                        axis=1,
                    )
                    for e in flat
                ],
                axis=1,
            )
        )
    samples = np.concatenate(samples)
    bad = np.mean(~np.isfinite(samples))
    if bad > 0.01:
        warnings.warn(
            f"bootstrap_agreements: {bad:.1%} of resamples have an undefined correlation (a "
            "constant resample); the interval ignores them",
            RuntimeWarning,
            stacklevel=2,
        )
    tail = (1 - level) / 2
    lo, hi = np.nanquantile(samples, [tail, 1 - tail], axis=0)  # [estimates, 2] each
    return [
        Agreement(r, rho, (float(lo[i, 0]), float(hi[i, 0])), (float(lo[i, 1]), float(hi[i, 1])))
        for i, (r, rho) in enumerate(points)
    ]


def seed_interval(
    values, within=None, level: float = 0.95, clip: bool = True
) -> tuple[float, float]:
    """A ``level`` interval for the mean over seeds of ``values``: mean +- t_{n-1} s / sqrt(n)
    (each seed's value already carries its own Monte Carlo error, so s covers it), clipped to
    a correlation's [-1, 1] unless ``clip`` is False; for one seed, that seed's own interval
    ``within`` (low, high)."""
    v = np.asarray(values, np.float64)
    if v.size == 1:
        if within is None:
            raise ValueError("one seed: pass its own interval as within")
        return float(within[0]), float(within[1])
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    lo, hi = v.mean() - half, v.mean() + half
    return (float(max(-1.0, lo)), float(min(1.0, hi))) if clip else (float(lo), float(hi))


def _weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of ``a, b`` (``[M]`` or ``[R, M]``) with multiplicities ``w [R, M]``."""
    total = w.sum(axis=1, keepdims=True)
    da = a - (w * a).sum(axis=1, keepdims=True) / total
    db = b - (w * b).sum(axis=1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * da * db).sum(1) / np.sqrt((w * da**2).sum(1) * (w * db**2).sum(1))


def _weighted_ranks(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise mid-ranks of ``values [M]`` (shared by every row) or ``[R, M]`` when entry j
    appears ``w[:, j]`` times: the ranks ``scipy.stats.rankdata`` gives the array with every
    entry repeated (ties share their mean rank)."""
    shared = values.ndim == 1
    v2 = values[None] if shared else values
    order = np.argsort(v2, axis=1)  # ties are grouped below, so no stable sort is needed
    v = np.take_along_axis(v2, order, axis=1)
    m = v.shape[1]
    cols = np.arange(m)[None]
    change = v[:, 1:] != v[:, :-1]
    starts = np.concatenate([np.ones((len(v), 1), bool), change], axis=1)
    ends = np.concatenate([change, np.ones((len(v), 1), bool)], axis=1)
    first = np.maximum.accumulate(np.where(starts, cols, 0), axis=1)  # tie group's first column
    last = np.minimum.accumulate(np.where(ends, cols, m - 1)[:, ::-1], axis=1)[:, ::-1]
    if shared:
        order, first, last = order[0], first[0], last[0]
        cum = np.cumsum(w[:, order], axis=1)
        before = np.where(first > 0, cum[:, np.maximum(first - 1, 0)], 0.0)
        mid = before + (cum[:, last] - before + 1) / 2
        ranks = np.empty_like(mid)
        ranks[:, order] = mid
        return ranks
    cum = np.cumsum(np.take_along_axis(w, order, axis=1), axis=1)
    before = np.where(first > 0, np.take_along_axis(cum, np.maximum(first - 1, 0), 1), 0.0)
    mid = before + (np.take_along_axis(cum, last, 1) - before + 1) / 2
    ranks = np.empty_like(mid)
    np.put_along_axis(ranks, order, mid, axis=1)
    return ranks


def spread(values) -> tuple[float, float, float]:
    """Mean, min and max of a list of numbers (the "mean [min, max] across seeds" of tables)."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.min()), float(v.max())


def welch(a, b) -> tuple[float, float, float]:
    """Welch's t-test of mean(a) vs mean(b): ``(t, two-sided p, Cohen's d)``.

    d = (mean(a) - mean(b)) / sqrt((var(a) + var(b)) / 2), sample variances (ddof 1).
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("Welch test inputs contain NaN or inf")
    t, p = stats.ttest_ind(a, b, equal_var=False)
    d = (a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float(t), float(p), float(d)
