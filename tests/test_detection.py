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


def _repeat(weights: np.ndarray) -> np.ndarray:
    """Row indices that repeat row n weights[n] times: the data set a weight vector stands for."""
    return np.repeat(np.arange(weights.size), weights)


def test_weighted_logistic_fits_are_logistic_fit_on_repeated_rows():
    """Each row of weights (multiplicities, duplicates and zeros included) gives the weights of
    ``logistic_fit`` on the explicitly repeated rows: the same objective, standardised by the
    repeated rows' mean and sd. Each stops at a gradient below 1e-7 N (standardised scale), from
    its own start, so two answers can lie 2e-7 N / c apart, c the objective's smallest
    curvature: about 0.1 N where the classes overlap (logits within 1e-5, relative or absolute),
    only the penalty l2 = 1e-3 on separable data (logits within 1e-3, relative)."""
    rng = np.random.default_rng(2)
    data = []
    x = rng.normal(size=(80, 2)) * [1.0, 50.0] + [0.0, 3000.0]
    y = rng.random(80) < 1 / (1 + np.exp(-(x[:, 0] - 0.01 * (x[:, 1] - 3000))))
    data.append((x, y, 1e-5, 1e-5))  # rtol, atol of the logits
    x = rng.normal(size=50)
    data.append((x, rng.random(50) < 0.4, 1e-5, 1e-5))  # noise: a slope near 0, either sign
    x = np.column_stack([np.exp(rng.uniform(2, 9, 40)), rng.uniform(0, 0.25, 40)])
    data.append((x, x[:, 0] > 2000, 1e-3, 0.0))  # separable, heavy-tailed
    for x, y, rtol, atol in data:
        n = len(y)
        weights = np.vstack([np.ones(n, int), rng.multinomial(n, np.full(n, 1 / n), size=4)])
        weights[-1, : n // 5] = 0  # a training fold: some questions absent
        batched = detection.weighted_logistic_fits(x, y, weights)
        assert batched.shape == (5, 1 + (x.shape[1] if x.ndim == 2 else 1))
        for w, fit in zip(weights, batched, strict=True):
            ref = detection.logistic_fit(x[_repeat(w)], y[_repeat(w)])
            np.testing.assert_allclose(
                detection.logistic_scores(fit, x),
                detection.logistic_scores(ref, x),
                rtol=rtol,
                atol=atol,
            )


def test_weighted_aurocs_are_the_auroc_of_the_repeated_scores():
    rng = np.random.default_rng(3)
    y = rng.random(40) < 0.3
    weights = rng.multinomial(40, np.full(40, 1 / 40), size=6)
    scores = rng.integers(0, 5, size=(6, 40)).astype(float)  # many ties, within and across
    scores[0] = rng.normal(size=40)
    got = detection.weighted_aurocs(scores, y, weights)
    want = [
        detection.auroc(s[_repeat(w)], y[_repeat(w)]) for s, w in zip(scores, weights, strict=True)
    ]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_bootstrap_folds_deal_distinct_questions():
    """Per resample: each class resampled to its own size; the questions present dealt to folds
    like ``out_of_fold_scores`` deals all questions (per class, sizes differing by at most one),
    so a duplicated question sits in one fold only; and the draws depend on labels and seed."""
    y = np.arange(60) % 5 < 2
    counts, fold = detection.bootstrap_folds(y, resamples=50, folds=5, seed=0)
    assert counts.shape == fold.shape == (50, 60)
    np.testing.assert_array_equal(counts[:, y].sum(1), y.sum())
    np.testing.assert_array_equal(counts[:, ~y].sum(1), (~y).sum())
    for c, f in zip(counts, fold, strict=True):
        for members in (y, ~y):
            present = members & (c > 0)
            sizes = np.bincount(f[present], minlength=5)
            assert sizes.max() - sizes.min() <= 1
    again = detection.bootstrap_folds(y, resamples=50, folds=5, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((counts, fold), again, strict=True))


def test_refit_bootstrap_is_paired():
    """Every score of the same questions sees the same resamples and folds: a score and its
    affine image (the logistic regression is invariant to it) draw identical AUROCs."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=70)
    y = rng.random(70) < 1 / (1 + np.exp(-x))
    a = detection.refit_bootstrap_aurocs(x, y, folds=5, resamples=100, seed=1)
    b = detection.refit_bootstrap_aurocs(3 - 2 * x, y, folds=5, resamples=100, seed=1)
    assert a.shape == (100,) and np.all((a >= 0) & (a <= 1))
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert not np.allclose(a, detection.refit_bootstrap_aurocs(x, y, 5, 100, seed=2))


# The question-level test of experiments/llm_qa_stats.py::question_rows on one model: two
# methods' refit_bootstrap_aurocs on the same seed, p = bootstrap_p of their difference. With 80
# resamples p < 0.05 exactly when at most 1 draw lies on the far side of 0, which a calibrated
# bootstrap does with probability 2 / 81 on each side: a level of 4.94 % (4.998 % at the
# experiment's 2 000), so fewer resamples do not make the test easier to pass.
SIMULATIONS = 300
RESAMPLES = 80
CASES = {  # labels from a, b ~ N(0, 1) -> the features of method A and of method B
    "noise_a_vs_b": (lambda a, b: np.full_like(a, 0.4), lambda a, b: (a, b)),
    "noise_ab_vs_b": (lambda a, b: np.full_like(a, 0.4), lambda a, b: (np.c_[a, b], b)),
    "equal_skill": (lambda a, b: 1 / (1 + np.exp(0.4 - a - b)), lambda a, b: (a, b)),
    "informative_a": (lambda a, b: 1 / (1 + np.exp(-1.5 * a)), lambda a, b: (a, b)),
}


def _simulated_p(case: str, n: int, count: int, seed: int) -> np.ndarray:
    """``count`` p of method A against method B on data sets of ``CASES[case]``, n questions
    each (a data set without 5 of each class, for 5 folds, drawn again)."""
    probability, features = CASES[case]
    rng = np.random.default_rng(seed)
    ps = []
    while len(ps) < count:
        a, b = rng.normal(size=(2, n))
        y = rng.random(n) < probability(a, b)
        if min(y.sum(), (~y).sum()) < 5:
            continue
        xa, xb = features(a, b)
        d = detection.refit_bootstrap_aurocs(xa, y, 5, RESAMPLES, len(ps))
        d -= detection.refit_bootstrap_aurocs(xb, y, 5, RESAMPLES, len(ps))
        ps.append(detection.bootstrap_p(d) if np.any(d) else 1.0)
    return np.array(ps)


@pytest.mark.parametrize("case", ["noise_a_vs_b", "noise_ab_vs_b", "equal_skill"])
def test_question_test_is_calibrated_under_the_null(case):
    """Three nulls, n = 60: no feature predicts the labels (one noise feature against another,
    and a 2-feature method against its own second feature, as Epi. & Alea. against Aleatoric);
    and two features of equal skill (population AUROC 0.71 each). A calibrated test rejects at
    5 % in 5 % of data sets. The rate over S data sets has a standard error sqrt(0.05 0.95 / S)
    (0.0126 at S = 300): the test fails above 5 % + 3 of them (8.8 %), which a calibrated test
    does about once in 700 runs (fixed seed: never, or always). Where the features are noise,
    a fit picks a slope's sign from noise and the bootstrap of that choice is conservative, so
    only equal skill must also reach 5 % - 3 SE (1.2 %). The fixed-score bootstrap it
    replaces rejected 12.7 %, 12.2 % and 7.4 % (1 000 data sets each, 500 resamples)."""
    p = _simulated_p(case, n=60, count=SIMULATIONS, seed=list(CASES).index(case))
    rate = np.mean(p < 0.05)
    margin = 3 * np.sqrt(0.05 * 0.95 / p.size)
    assert rate <= 0.05 + margin, (rate, margin)
    if case == "equal_skill":
        assert rate >= 0.05 - margin, (rate, margin)


def test_question_test_sees_an_informative_feature():
    """Labels from a logistic link with slope 1.5 on a (population AUROC 0.81) against the noise
    b (0.5), n = 100: the AUROC difference, ~0.3, is ~4 of its sd (about 0.08: two AUROCs'
    Hanley-McNeil sd, 0.04 and 0.06, and the fit's), so a test of that power rejects at 5 % in
    ~95 % of data sets; it must in at least 75 % of 40 (a binomial sd of 0.035 at 95 %)."""
    assert logistic_link_auroc(1.5) == pytest.approx(0.81, abs=0.01)
    p = _simulated_p("informative_a", n=100, count=40, seed=20)
    assert np.mean(p < 0.05) >= 0.75, p
