"""AUROC, logistic probes, splits, bootstrap and Benjamini-Hochberg against hand computations."""

import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from gnuq import detection


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


def test_auroc_by_hand():
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of 4 pairs ordered right
    assert detection.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert detection.auroc([1, 1, 2], [0, 1, 1]) == 0.75  # a tie counts 1/2
    with pytest.raises(ValueError, match="both positive and negative"):
        detection.auroc([1, 2], [1, 1])


def test_logistic_fit_is_the_penalised_maximum_likelihood():
    """Against scipy.optimize on the same objective, written out in the original scale."""
    from scipy import optimize

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) * [1.0, 10.0] + [0.0, 5.0]
    y = rng.random(200) < 1 / (1 + np.exp(-(x[:, 0] - 0.1 * x[:, 1])))
    w = detection.logistic_fit(x, y, l2=0.0)

    def nll(v):
        z = x @ v[:2] + v[2]
        return np.sum(np.logaddexp(0, z) - y * z)

    ref = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-8}).x
    np.testing.assert_allclose(w, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(detection.logistic_scores(w, x), x @ ref[:2] + ref[2], atol=1e-4)


def test_logistic_fit_on_separable_heavy_tailed_features():
    """Gradient norms span orders of magnitude and few answers are correct: the data can be
    separable. The fit must stay finite, separate them, and not warn; and say so when it stops
    short."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.exp(rng.uniform(2, 9, 40)), rng.uniform(0, 0.25, 40)])
    y = x[:, 0] > 2000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = detection.logistic_fit(x, y)
    assert np.all(np.isfinite(w)) and detection.auroc(detection.logistic_scores(w, x), y) == 1.0
    with pytest.warns(UserWarning, match="Newton steps"):
        detection.logistic_fit(x, y, steps=1)


def test_split_aurocs_are_reproducible_and_see_the_signal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    y = rng.random(300) < 1 / (1 + np.exp(-3 * x))
    splits = detection.random_splits(y, splits=20, seed=3)
    for train, test in splits:  # 20 % of each class held out
        assert len(train) + len(test) == 300 and abs(len(test) - 60) <= 1
        assert y[test].sum() == round(0.2 * y.sum())
    a = detection.split_aurocs(x, y, splits)
    again = detection.split_aurocs(x, y, detection.random_splits(y, splits=20, seed=3))
    assert a.shape == (20,) and np.array_equal(a, again)
    # the mean over splits scatters about the population AUROC as one full-sample AUROC does
    # (measured over data sets): within 5 of its sd
    pop, n_pos, n_neg = logistic_link_auroc(3.0), y.sum(), (~y).sum()
    assert abs(a.mean() - pop) < 5 * auroc_sd(pop, n_pos, n_neg), (a.mean(), pop)
    # a decreasing score is learned as such: the logistic regression picks the sign
    np.testing.assert_allclose(detection.split_aurocs(-x, y, splits), a)
    # pure noise: the split mean of a noise score scatters about 0.5 with ~1.25x the null sd of
    # a full-sample AUROC (each split learns its own sign; measured over data sets). The mean
    # over 10 independent noise scores lies within 5 null sd / sqrt(10): about 4 of its sd
    many = detection.random_splits(y, 50, seed=3)
    noise = [detection.split_aurocs(rng.normal(size=300), y, many).mean() for _ in range(10)]
    assert abs(np.mean(noise) - 0.5) < 5 * auroc_sd(0.5, n_pos, n_neg) / np.sqrt(10), noise


def test_random_splits_hold_both_classes_or_refuse():
    y = np.arange(12) < 3  # 3 positives: an unstratified 80/20 split often holds none
    splits = detection.random_splits(y, splits=30, seed=0)
    for train, test in splits:
        assert 0 < y[test].sum() < len(test) and 0 < y[train].sum() < len(train)
        assert sorted([*train, *test]) == list(range(12))
    assert len({tuple(test) for _, test in splits}) > 5  # random, not one fixed split
    with pytest.raises(ValueError, match="at least 2"):
        detection.random_splits(np.arange(10) == 0, splits=5, seed=0)


def test_paired_bootstrap_by_hand():
    # differences all equal: every resampled mean is the same, the interval collapses on it and
    # no resample reaches 0, so p is the floor 2 / (1 + resamples)
    mean, lo, hi, p = detection.paired_bootstrap([0.1, 0.1, 0.1], resamples=999, seed=0)
    assert (mean, lo, hi) == pytest.approx((0.1, 0.1, 0.1)) and p == pytest.approx(2 / 1000)
    # (-1, 1): a resampled mean is -1, 0 or 1 with probability 1/4, 1/2, 1/4, so for an observed
    # mean of 0 the far side (>= 0) holds 3/4 of the resamples and p is 1
    assert detection.paired_bootstrap([-1.0, 1.0], resamples=4000, seed=0)[3] == 1.0
    # (1, 1, -1, 1, 1): the resampled mean is <= 0 when at least 3 of the 5 draws are -1,
    # P = sum_{k>=3} C(5,k) 0.2^k 0.8^(5-k) = 0.05792, so p is about 2 x 0.058
    # (the far side's count is binomial: within 5 of its sd)
    d, far, resamples = [1.0, 1.0, -1.0, 1.0, 1.0], 0.05792, 200_000
    assert detection.paired_bootstrap(d, resamples=resamples, seed=1)[3] == pytest.approx(
        2 * far, abs=5 * 2 * np.sqrt(far * (1 - far) / resamples)
    )
    with pytest.raises(ValueError, match="at least 2 finite"):
        detection.paired_bootstrap([0.1, np.nan], resamples=10, seed=0)


def test_benjamini_hochberg_by_hand():
    # sorted p (0.01, 0.02, 0.03, 0.5) times m/rank (4, 2, 4/3, 1), then the running minimum from
    # the top: (0.04, 0.04, 0.04, 0.5)
    adjusted = detection.benjamini_hochberg([0.5, 0.01, 0.03, 0.02])
    np.testing.assert_allclose(adjusted, [0.5, 0.04, 0.04, 0.04])
    assert np.all(adjusted >= [0.5, 0.01, 0.03, 0.02])
