"""Correlation helpers against scipy's definitions and hand-made cases."""

import numpy as np
import pytest
from scipy import stats

from gnuq import metrics


def test_correlations_of_known_relations():
    x = np.linspace(0, 1, 50)
    assert metrics.correlations(x, 3 * x + 1) == pytest.approx((1.0, 1.0))
    r, rho = metrics.correlations(x, np.exp(5 * x))
    assert rho == pytest.approx(1.0) and 0.7 < r < 0.95  # monotone but not linear
    assert metrics.correlations(x[:, None], -x[None, :].T) == pytest.approx((-1.0, -1.0))


def test_undefined_correlations_raise():
    with pytest.raises(ValueError, match="constant"):
        metrics.correlations(np.ones(5), np.arange(5))
    with pytest.raises(ValueError, match="NaN"):
        metrics.correlations([1.0, np.nan, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.correlations(np.arange(4), np.arange(5))


def test_spread():
    assert metrics.spread([0.5, 0.7, 0.6]) == pytest.approx((0.6, 0.5, 0.7))


def test_welch_refuses_non_finite_input():
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.welch([1.0, -np.inf, 2.0], [1.0, 2.0])


def test_welch_against_hand_computation():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    t, p, d = metrics.welch(a, b)
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 5
    assert t == pytest.approx((a.mean() - b.mean()) / np.sqrt(va + vb))
    dof = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)  # Welch-Satterthwaite
    from scipy import stats

    assert p == pytest.approx(2 * stats.t.sf(abs(t), dof))
    assert d == pytest.approx((2.5 - 6.0) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))


def test_class_correlations_per_class_and_pooled():
    rng = np.random.default_rng(0)
    est = rng.random((50, 3))
    ref = est + 0.1 * rng.random((50, 3))
    out = metrics.class_correlations(est, ref)
    assert [c for c, _, _ in out] == [0, 1, 2, "overall"]
    assert out[1][1] == pytest.approx(stats.pearsonr(est[:, 1], ref[:, 1])[0])
    assert out[3][2] == pytest.approx(stats.spearmanr(est.ravel(), ref.ravel())[0])
    assert [c for c, _, _ in metrics.class_correlations(est[:, :1], ref[:, :1])] == ["overall"]
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        metrics.class_correlations(est[:, 0], ref[:, 0])
