"""The width-scaled prior as a change of coordinates: the same network, the prior it claims,
and the gradient norm in the prior's metric, checked against direct computations in W."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gnuq
from gnuq import likelihoods, models, priors, train

X = jax.random.normal(jax.random.key(1), (7, 2))


def _scaled(scale=3.0):
    model = models.mlp(jax.random.key(0), 2, (5, 6), 3)
    return model, priors.scaled(model, priors.width_scaled_stds(model.params, scale))


def test_the_rewritten_model_is_the_same_network():
    model, scaled = _scaled()
    weights = scaled.to_original(scaled.model.params)
    for w, w0 in zip(jax.tree.leaves(weights), jax.tree.leaves(model.params), strict=True):
        np.testing.assert_allclose(w, w0, rtol=1e-6, atol=1e-7)
    v = jax.tree.map(lambda a: a + 0.3, scaled.model.params)
    np.testing.assert_allclose(
        scaled.model.apply(v, X), model.apply(scaled.to_original(v), X), rtol=1e-6
    )


def test_an_isotropic_prior_on_v_is_the_width_scaled_prior_on_w():
    model, scaled = _scaled(scale=3.0)
    lik = likelihoods.get("categorical")
    y = jnp.arange(7) % 3
    v = jax.tree.map(lambda a: a + 0.2, scaled.model.params)
    w = scaled.to_original(v)
    # N(0, 3^2 / fan_in) on kernels, N(0, 1) on biases, written out leaf by leaf in W
    variances = {"kernel": lambda a: 9.0 / a.shape[0], "bias": lambda a: 1.0}
    prior = sum(
        0.5 * jnp.sum(leaf**2) / variances[path[-1].key](leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(w)
    )
    expected = jnp.sum(lik.nll(model.apply(w, X), y)) + prior
    u_v = train.neg_log_posterior(scaled.model.apply, lik, 1.0)(v, X, y)
    np.testing.assert_allclose(u_v, expected, rtol=1e-5)


def test_gradient_norm_in_v_is_the_norm_in_the_prior_metric():
    model, scaled = _scaled(scale=2.0)
    v = scaled.model.params
    w = scaled.to_original(v)
    variance = {"kernel": lambda a: 4.0 / a.shape[0], "bias": lambda a: 1.0}

    def prob(params, x):  # class 1's probability at one input
        return jax.nn.softmax(model.apply(params, x[None]))[0, 1]

    expected = []
    for x in X:
        g = jax.grad(prob)(w, x)
        expected.append(
            sum(
                variance[path[-1].key](leaf) * jnp.sum(leaf**2)
                for path, leaf in jax.tree_util.tree_leaves_with_path(g)
            )
        )
    got = gnuq.uncertainty(scaled.model.apply, v, X, likelihood="categorical").epistemic[:, 1]
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-4)
    paper = gnuq.uncertainty(model.apply, w, X, likelihood="categorical").epistemic[:, 1]
    assert not np.allclose(got, paper, rtol=1e-2)  # the two metrics differ here


@pytest.mark.parametrize("scale,bias", [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_non_positive_scales_are_refused(scale, bias):
    model = _scaled()[0]
    with pytest.raises(ValueError, match="prior scales must be positive"):
        priors.width_scaled_stds(model.params, scale, bias)
    stds = jax.tree.map(lambda _: float("nan"), model.params)
    with pytest.raises(ValueError, match="positive and finite"):
        priors.scaled(model, stds)
