"""Correlation helpers against scipy's definitions and hand-made cases."""

import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from gnuq import stats


def auroc_sd(auroc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil's standard error of an AUROC from n_pos positives and n_neg negatives; at
    0.5 it is the Mann-Whitney null's sqrt((n_pos + n_neg + 1) / (12 n_pos n_neg))."""
    q1, q2 = auroc / (2 - auroc), 2 * auroc**2 / (1 + auroc)
    var = auroc * (1 - auroc) + (n_pos - 1) * (q1 - auroc**2) + (n_neg - 1) * (q2 - auroc**2)
    return float(np.sqrt(var / (n_pos * n_neg)))


def logistic_link_auroc(slope: float) -> float:
    """Population AUROC of the score x for labels y ~ Bernoulli(sigmoid(slope x)), x ~ N(0, 1):
    P(x of a positive > x of a negative), by quadrature."""
    x = np.linspace(-10, 10, 20001)
    pos = scipy_stats.norm.pdf(x) / (1 + np.exp(-slope * x))
    neg = scipy_stats.norm.pdf(x) / (1 + np.exp(slope * x))
    pos, neg = pos / pos.sum(), neg / neg.sum()
    return float(np.sum(pos * (np.cumsum(neg) - neg / 2)))


def test_auroc_helpers():
    assert logistic_link_auroc(0.0) == pytest.approx(0.5)
    assert logistic_link_auroc(3.0) == pytest.approx(0.919, abs=1e-3)
    assert auroc_sd(0.5, 40, 60) == pytest.approx(np.sqrt(101 / (12 * 40 * 60)))


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


def test_auroc_by_hand():
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of 4 pairs ordered right
    assert stats.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert stats.auroc([1, 1, 2], [0, 1, 1]) == 0.75  # a tie counts 1/2
    with pytest.raises(ValueError, match="both positive and negative"):
        stats.auroc([1, 2], [1, 1])


def test_logistic_fit_is_the_penalised_maximum_likelihood():
    """Against scipy.optimize on the same objective, written out in the original scale."""
    from scipy import optimize

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) * [1.0, 10.0] + [0.0, 5.0]
    y = rng.random(200) < 1 / (1 + np.exp(-(x[:, 0] - 0.1 * x[:, 1])))
    w = stats.logistic_fit(x, y, l2=0.0)

    def nll(v):
        z = x @ v[:2] + v[2]
        return np.sum(np.logaddexp(0, z) - y * z)

    ref = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-8}).x
    np.testing.assert_allclose(w, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.logistic_scores(w, x), x @ ref[:2] + ref[2], atol=1e-4)


def test_logistic_fit_on_separable_heavy_tailed_features():
    """Gradient norms span orders of magnitude and few answers are correct: the data can be
    separable. The fit must stay finite, separate them, and not warn; and say so when it stops
    short."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.exp(rng.uniform(2, 9, 40)), rng.uniform(0, 0.25, 40)])
    y = x[:, 0] > 2000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = stats.logistic_fit(x, y)
    assert np.all(np.isfinite(w)) and stats.auroc(stats.logistic_scores(w, x), y) == 1.0
    with pytest.warns(UserWarning, match="Newton steps"):
        stats.logistic_fit(x, y, steps=1)


def test_split_aurocs_are_reproducible_and_see_the_signal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    y = rng.random(300) < 1 / (1 + np.exp(-3 * x))
    splits = stats.random_splits(y, splits=20, seed=3)
    for train, test in splits:  # 20 % of each class held out
        assert len(train) + len(test) == 300 and abs(len(test) - 60) <= 1
        assert y[test].sum() == round(0.2 * y.sum())
    a = stats.split_aurocs(x, y, splits)
    again = stats.split_aurocs(x, y, stats.random_splits(y, splits=20, seed=3))
    assert a.shape == (20,) and np.array_equal(a, again)
    # the mean over splits scatters about the population AUROC as one full-sample AUROC does
    # (measured over data sets): within 5 of its sd
    pop, n_pos, n_neg = logistic_link_auroc(3.0), y.sum(), (~y).sum()
    assert abs(a.mean() - pop) < 5 * auroc_sd(pop, n_pos, n_neg), (a.mean(), pop)
    # a decreasing score is learned as such: the logistic regression picks the sign
    np.testing.assert_allclose(stats.split_aurocs(-x, y, splits), a)
    # pure noise: the split mean of a noise score scatters about 0.5 with ~1.25x the null sd of
    # a full-sample AUROC (each split learns its own sign; measured over data sets). The mean
    # over 10 independent noise scores lies within 5 null sd / sqrt(10): about 4 of its sd
    many = stats.random_splits(y, 50, seed=3)
    noise = [stats.split_aurocs(rng.normal(size=300), y, many).mean() for _ in range(10)]
    assert abs(np.mean(noise) - 0.5) < 5 * auroc_sd(0.5, n_pos, n_neg) / np.sqrt(10), noise


def test_random_splits_hold_both_classes_or_refuse():
    y = np.arange(12) < 3  # 3 positives: an unstratified 80/20 split often holds none
    splits = stats.random_splits(y, splits=30, seed=0)
    for train, test in splits:
        assert 0 < y[test].sum() < len(test) and 0 < y[train].sum() < len(train)
        assert sorted([*train, *test]) == list(range(12))
    assert len({tuple(test) for _, test in splits}) > 5  # random, not one fixed split
    with pytest.raises(ValueError, match="at least 2"):
        stats.random_splits(np.arange(10) == 0, splits=5, seed=0)


def test_paired_bootstrap_by_hand():
    # differences all equal: every resampled mean is the same, the interval collapses on it and
    # no resample reaches 0, so p is the floor 2 / (1 + resamples)
    mean, lo, hi, p = stats.paired_bootstrap([0.1, 0.1, 0.1], resamples=999, seed=0)
    assert (mean, lo, hi) == pytest.approx((0.1, 0.1, 0.1)) and p == pytest.approx(2 / 1000)
    # (-1, 1): a resampled mean is -1, 0 or 1 with probability 1/4, 1/2, 1/4, so for an observed
    # mean of 0 the far side (>= 0) holds 3/4 of the resamples and p is 1
    assert stats.paired_bootstrap([-1.0, 1.0], resamples=4000, seed=0)[3] == 1.0
    # (1, 1, -1, 1, 1): the resampled mean is <= 0 when at least 3 of the 5 draws are -1,
    # P = sum_{k>=3} C(5,k) 0.2^k 0.8^(5-k) = 0.05792, so p is about 2 x 0.058
    # (the far side's count is binomial: within 5 of its sd)
    d, far, resamples = [1.0, 1.0, -1.0, 1.0, 1.0], 0.05792, 200_000
    assert stats.paired_bootstrap(d, resamples=resamples, seed=1)[3] == pytest.approx(
        2 * far, abs=5 * 2 * np.sqrt(far * (1 - far) / resamples)
    )
    with pytest.raises(ValueError, match="at least 2 finite"):
        stats.paired_bootstrap([0.1, np.nan], resamples=10, seed=0)


def test_benjamini_hochberg_by_hand():
    # sorted p (0.01, 0.02, 0.03, 0.5) times m/rank (4, 2, 4/3, 1), then the running minimum from
    # the top: (0.04, 0.04, 0.04, 0.5)
    adjusted = stats.benjamini_hochberg([0.5, 0.01, 0.03, 0.02])
    np.testing.assert_allclose(adjusted, [0.5, 0.04, 0.04, 0.04])
    assert np.all(adjusted >= [0.5, 0.01, 0.03, 0.02])


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
