"""Negative log-likelihoods against their textbook closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gnuq import likelihoods


def test_bernoulli_nll_is_binary_cross_entropy():
    z = jnp.array([-3.0, 0.0, 2.5, 40.0])
    y = jnp.array([1, 0, 1, 0])
    p = 1 / (1 + np.exp(-np.asarray(z[:3], np.float64)))
    expected = -np.log(np.where(y[:3] == 1, p, 1 - p))
    got = likelihoods.get("bernoulli").nll(z[:, None], y)
    np.testing.assert_allclose(got[:3], expected, rtol=1e-5)
    np.testing.assert_allclose(got[3], 40.0, rtol=1e-6)  # stable where 1 - p underflows


def test_categorical_nll_is_negative_log_softmax():
    z = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = jnp.array([2, 0])
    got = likelihoods.get("categorical").nll(z, y)
    np.testing.assert_allclose(got, [-np.log(np.exp(3) / np.exp([1, 2, 3]).sum()), np.log(3)])


def test_gaussian_nll_is_normal_logpdf():
    f, y = jnp.array([0.0, 1.0, -2.0]), jnp.array([0.5, 1.0, 0.0])
    got = likelihoods.get("gaussian", 0.3).nll(f, y)
    np.testing.assert_allclose(got, -stats.norm.logpdf(y, f, np.sqrt(0.3)), rtol=1e-5)
    with pytest.raises(ValueError, match="needs noise_var"):
        likelihoods.get("gaussian").nll(f, y)
    with pytest.raises(ValueError, match="positive"):
        likelihoods.get("gaussian", -1.0)


def test_output_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\[N\] or \[N, 1\]"):
        likelihoods.get("bernoulli").predict(jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"C >= 2"):
        likelihoods.get("categorical").predict(jnp.zeros((3,)))


def test_targets_of_the_wrong_shape_are_refused():
    """A [N, 1] target would broadcast against [N] logits to an [N, N] loss without a word."""
    lik = likelihoods.get("bernoulli")
    with pytest.raises(ValueError, match=r"targets must have shape \[N\]"):
        lik.nll(jnp.zeros((4, 1)), jnp.zeros((4, 1)))


def test_training_data_checks():
    """NaN inputs and {-1, +1} bernoulli labels used to train silently (all-NaN Laplace, 0.65
    instead of 0.87 accuracy); each now raises before any training."""
    from gnuq import models, train
    from gnuq.baselines import laplace

    bern = likelihoods.get("bernoulli")
    x = jnp.ones((4, 2))
    y = jnp.array([0.0, 1.0, 1.0, 0.0])
    cases = [
        (x.at[2, 0].set(jnp.nan), y, r"training x contains NaN or inf in rows \[2\]"),
        (x, jnp.array([-1.0, 1.0, 1.0, -1.0]), "bernoulli labels must be 0 or 1"),
        (x, y.at[1].set(jnp.inf), "training y contains NaN"),
        (x[:3], y, "x has 3 rows but y has 4"),
    ]
    m = models.mlp(jax.random.key(0), 2, (3,), 1)
    for xx, yy, message in cases:
        with pytest.raises(ValueError, match=message):
            train.fit_map(m.apply, bern, m.params, xx, yy)
        with pytest.raises(ValueError, match=message):
            laplace.laplace_posterior(m.apply, m.params, xx, yy, bern, 1.0, structure="diag")
    with pytest.raises(ValueError, match="integers >= 0"):
        likelihoods.check_data(likelihoods.get("categorical"), x, jnp.array([0, 1.5, 2, 0]))
