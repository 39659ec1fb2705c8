"""Correlation helpers against scipy's definitions and hand-made cases."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from gnuq import stats


def test_correlations_of_known_relations():
    x = np.linspace(0, 1, 50)
    assert stats.correlations(x, 3 * x + 1) == pytest.approx((1.0, 1.0))
    r, rho = stats.correlations(x, np.exp(5 * x))
    assert rho == pytest.approx(1.0) and 0.7 < r < 0.95  # monotone but not linear
    assert stats.correlations(x[:, None], -x[None, :].T) == pytest.approx((-1.0, -1.0))


def test_undefined_correlations_raise():
    with pytest.raises(ValueError, match="constant"):
        stats.correlations(np.ones(5), np.arange(5))
    with pytest.raises(ValueError, match="NaN"):
        stats.correlations([1.0, np.nan, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="shapes differ"):
        stats.correlations(np.arange(4), np.arange(5))


def test_spread():
    assert stats.spread([0.5, 0.7, 0.6]) == pytest.approx((0.6, 0.5, 0.7))


def test_welch_refuses_non_finite_input():
    with pytest.raises(ValueError, match="NaN or inf"):
        stats.welch([1.0, -np.inf, 2.0], [1.0, 2.0])


def test_welch_against_hand_computation():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    t, p, d = stats.welch(a, b)
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 5
    assert t == pytest.approx((a.mean() - b.mean()) / np.sqrt(va + vb))
    dof = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)  # Welch-Satterthwaite

    assert p == pytest.approx(2 * scipy_stats.t.sf(abs(t), dof))
    assert d == pytest.approx((2.5 - 6.0) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))


def test_class_correlations_per_class_and_pooled():
    rng = np.random.default_rng(0)
    est = rng.random((50, 3))
    ref = est + 0.1 * rng.random((50, 3))
    out = stats.class_correlations(est, ref)
    assert [c for c, _, _ in out] == [0, 1, 2, "overall"]
    assert out[1][1] == pytest.approx(scipy_stats.pearsonr(est[:, 1], ref[:, 1])[0])
    assert out[3][2] == pytest.approx(scipy_stats.spearmanr(est.ravel(), ref.ravel())[0])
    assert [c for c, _, _ in stats.class_correlations(est[:, :1], ref[:, :1])] == ["overall"]
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        stats.class_correlations(est[:, 0], ref[:, 0])


def test_weighted_ranks_are_the_ranks_of_the_repeated_array():
    """Ground truth: scipy's mid-ranks of the array with entry j repeated w_j times (ties
    included: values drawn from a few levels)."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, size=(5, 12)).astype(float)
    weights = rng.integers(0, 3, size=(5, 12)).astype(float)
    for shared in (False, True):
        got = stats._weighted_ranks(values[0] if shared else values, weights)
        for i in range(5):
            v = values[0] if shared else values[i]
            repeated = np.repeat(v, weights[i].astype(int))
            expected = dict(zip(repeated, scipy_stats.rankdata(repeated), strict=True))
            for j in np.flatnonzero(weights[i]):
                assert got[i, j] == pytest.approx(expected[v[j]])


def test_bootstrap_interval_covers_the_true_correlation():
    """Monte Carlo ground truth: for n = 150 iid bivariate normal cells (one block each) with
    correlation 0.6, the 95% percentile interval covers 0.6 in about 94% of data sets (the
    percentile bootstrap of r undercovers slightly at this n). 200 data sets: the binomial sd of
    the coverage is 1.6%, so [0.88, 0.99] is a margin of about 4 sd below and 3 above."""
    rng = np.random.default_rng(1)
    cov = [[1.0, 0.6], [0.6, 1.0]]
    hits = 0
    for i in range(200):
        a, b = rng.multivariate_normal([0, 0], cov, size=150).T
        agreement = stats.bootstrap_agreement(a, b, np.arange(150), resamples=400, seed=i)
        hits += agreement.pearson_ci[0] <= 0.6 <= agreement.pearson_ci[1]
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_agreement_point_estimates_and_reference_replicates():
    rng = np.random.default_rng(2)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 20)), -1)
    grid = grid.reshape(-1, 2)
    blocks = stats.grid_blocks(grid, 4)
    assert sorted(np.bincount(blocks)) == [25] * 16  # 4 x 4 tiles of 5 x 5 cells
    est = np.exp(-(grid**2).sum(1))
    ref = est + 0.05 * rng.normal(size=len(est))
    fixed = stats.bootstrap_agreement(est, ref, blocks, resamples=300)
    assert (fixed.pearson, fixed.spearman) == pytest.approx(stats.correlations(est, ref))
    assert fixed.pearson_ci[0] < fixed.pearson < fixed.pearson_ci[1]
    # a reference that itself varies from resample to resample widens the interval
    noisy = ref + 0.3 * rng.normal(size=(300, len(ref)))
    wider = stats.bootstrap_agreement(est, ref, blocks, reference_replicates=noisy)
    assert np.ptp(wider.pearson_ci) > 2 * np.ptp(fixed.pearson_ci)
    with pytest.raises(ValueError, match="reference_replicates"):
        stats.bootstrap_agreement(est, ref, blocks, reference_replicates=noisy[:, :10])


def test_seed_interval():
    lo, hi = stats.seed_interval([0.5, 0.6, 0.7])
    half = scipy_stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert (lo, hi) == pytest.approx((0.6 - half, 0.6 + half))
    assert stats.seed_interval([0.99, 0.999])[1] == 1.0  # clipped to a correlation's range
    assert stats.seed_interval([0.4], within=(0.3, 0.5)) == (0.3, 0.5)
    with pytest.raises(ValueError, match="one seed"):
        stats.seed_interval([0.4])
