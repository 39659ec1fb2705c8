"""Estimators vs ground truth: closed forms, central finite differences, brute-force gradients,
and the dense identity vs the generic vmap path."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gnuq
from gnuq import models

SHAPES = [((), 1), ((5,), 1), ((4, 3), 3), ((8, 8, 8), 4)]


def _model(widths, outputs, dtype, seed=0, input_dim=3):
    return models.mlp(jax.random.key(seed), input_dim, widths, outputs, "tanh", dtype)


def _inputs(n, dtype, seed=1, input_dim=3):
    return 2.0 * jax.random.normal(jax.random.key(seed), (n, input_dim), dtype)


def _likelihood_cases(widths, outputs):
    if outputs == 1:
        return [("bernoulli", outputs), ("gaussian", outputs)]
    return [("categorical", outputs)]


@pytest.mark.parametrize("widths,outputs", SHAPES)
def test_dense_matches_vmap_float64(widths, outputs):
    with jax.enable_x64(True):
        for likelihood, k in _likelihood_cases(widths, outputs):
            m = _model(widths, k, jnp.float64)
            x = _inputs(37, jnp.float64)
            dense = gnuq.squared_grad_norms(
                m.apply, m.params, x, likelihood=likelihood, method="dense"
            )
            vmap = gnuq.squared_grad_norms(
                m.apply, m.params, x, likelihood=likelihood, method="vmap", chunk_size=5
            )
            assert dense.dtype == jnp.float64
            np.testing.assert_allclose(dense, vmap, rtol=1e-8, atol=1e-14 * float(vmap.max()))


@pytest.mark.parametrize("widths,outputs", SHAPES)
def test_dense_matches_vmap_float32(widths, outputs):
    for likelihood, k in _likelihood_cases(widths, outputs):
        m = _model(widths, k, jnp.float32)
        x = _inputs(64, jnp.float32)
        dense = gnuq.squared_grad_norms(
            m.apply, m.params, x, likelihood=likelihood, method="dense", chunk_size=16
        )
        vmap = gnuq.squared_grad_norms(m.apply, m.params, x, likelihood=likelihood, method="vmap")
        # relative to the array's scale: float32 cancellation makes tiny entries noisy
        rel = float(jnp.linalg.norm(dense - vmap) / jnp.linalg.norm(vmap))
        assert rel < 1e-4, rel


def test_vmap_matches_central_finite_differences():
    with jax.enable_x64(True):
        m = _model((3, 2), 3, jnp.float64, input_dim=2)
        x = _inputs(4, jnp.float64, input_dim=2)
        flat, unravel = ravel_pytree(m.params)
        h = 1e-5

        def probs(theta):
            return jax.nn.softmax(m.apply(unravel(theta), x), axis=-1)  # [N, C]

        grads = np.stack(
            [(probs(flat + h * e) - probs(flat - h * e)) / (2 * h) for e in np.eye(flat.size)]
        )  # [P, N, C]
        expected = np.sum(grads**2, axis=0)
        got = gnuq.squared_grad_norms(m.apply, m.params, x, likelihood="categorical", method="vmap")
        np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_logistic_regression_closed_form():
    # p = sigmoid(w.x + b) => grad p = p (1 - p) [x, 1] => ||grad p||^2 = p^2 (1-p)^2 (||x||^2 + 1)
    with jax.enable_x64(True):
        m = _model((), 1, jnp.float64)
        x = _inputs(50, jnp.float64)
        u = gnuq.uncertainty(m.apply, m.params, x, likelihood="bernoulli")
        p = jax.nn.sigmoid(m.apply(m.params, x)[:, 0])
        np.testing.assert_allclose(u.probs, p, rtol=1e-12)
        np.testing.assert_allclose(u.aleatoric, p * (1 - p), rtol=1e-12)
        expected = (p * (1 - p)) ** 2 * (jnp.sum(x**2, axis=1) + 1)
        np.testing.assert_allclose(u.epistemic, expected, rtol=1e-10)


def test_categorical_outputs_and_shapes():
    m = _model((6,), 4, jnp.float32)
    x = _inputs(10, jnp.float32)
    u = gnuq.uncertainty(m.apply, m.params, x, likelihood="categorical")
    probs = jax.nn.softmax(m.apply(m.params, x), axis=-1)
    assert u.epistemic.shape == u.aleatoric.shape == u.probs.shape == (10, 4)
    np.testing.assert_allclose(u.probs, probs, rtol=1e-6)
    np.testing.assert_allclose(u.aleatoric, probs * (1 - probs), rtol=1e-6)
    assert bool(jnp.all(u.epistemic > 0))


def test_gaussian_epistemic_and_noise():
    with jax.enable_x64(True):
        m = _model((), 1, jnp.float64)  # linear regression: grad f = [x, 1]
        x = _inputs(7, jnp.float64)
        u = gnuq.uncertainty(m.apply, m.params, x, likelihood="gaussian", noise_var=0.25)
        np.testing.assert_allclose(u.epistemic, jnp.sum(x**2, axis=1) + 1, rtol=1e-12)
        np.testing.assert_allclose(u.aleatoric, 0.25)
        np.testing.assert_allclose(u.probs, m.apply(m.params, x)[:, 0], rtol=1e-12)
        unknown = gnuq.uncertainty(m.apply, m.params, x, likelihood="gaussian")
        assert bool(jnp.all(jnp.isnan(unknown.aleatoric)))


def test_bernoulli_equals_two_class_categorical_with_a_zero_logit():
    """Bernoulli with logit z is the categorical with logits [0, z]: p_1 = sigmoid(z) and
    p_0 = 1 - p_1, so grad p_0 = -grad p_1: both classes carry the bernoulli epistemic and
    aleatoric values, and probs[:, 1] is the bernoulli probability."""
    m = _model((5,), 1, jnp.float32)
    x = _inputs(20, jnp.float32)

    def two_class(params, xx):
        z = m.apply(params, xx)
        return jnp.concatenate([jnp.zeros_like(z), z], axis=1)

    b = gnuq.uncertainty(m.apply, m.params, x, likelihood="bernoulli")
    c = gnuq.uncertainty(two_class, m.params, x, likelihood="categorical")
    np.testing.assert_allclose(c.probs[:, 1], b.probs, rtol=1e-6)
    for k in (0, 1):
        np.testing.assert_allclose(c.epistemic[:, k], b.epistemic, rtol=1e-5)
        np.testing.assert_allclose(c.aleatoric[:, k], b.aleatoric, rtol=1e-5)


# --- which path serves which model ---------------------------------------------------------


class _WithScale(nn.Module):
    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, ())
        return scale * nn.Dense(2)(x)


class _SharedDense(nn.Module):
    @nn.compact
    def __call__(self, x):
        layer = nn.Dense(3)
        return layer(jnp.tanh(layer(x)))


class _PerPosition(nn.Module):
    @nn.compact
    def __call__(self, x):  # x [N, 4] read as 2 positions of 2 features each
        h = nn.Dense(3)(x.reshape(x.shape[0], 2, 2))
        return jnp.sum(h, axis=1)


@pytest.mark.parametrize(
    "module,hint",
    [
        (_WithScale(), "parameters"),
        (_SharedDense(), "more than once"),
        (_PerPosition(), "one application per example"),
    ],
)
def test_dense_refuses_models_it_cannot_serve_and_auto_takes_the_engine(module, hint):
    x = jnp.ones((5, 4 if isinstance(module, _PerPosition) else 3))
    params = module.init(jax.random.key(0), x)["params"]

    def apply(p, xx):
        return module.apply({"params": p}, xx)

    assert not gnuq.dense_applies(apply, params, x)
    with pytest.raises(ValueError, match=hint):
        gnuq.uncertainty(apply, params, x, likelihood="categorical", method="dense")
    auto = gnuq.uncertainty(apply, params, x, likelihood="categorical")
    vmap = gnuq.uncertainty(apply, params, x, likelihood="categorical", method="vmap")
    np.testing.assert_allclose(auto.epistemic, vmap.epistemic, rtol=1e-5)  # float32 rounding


def test_dense_refuses_a_model_that_transforms_its_params_before_the_layers():
    # every parameter sits in a Dense layer applied once per example, but the layers receive
    # 2 * params: their gradients are twice the layers' own, the identity's norms 4x too small
    x = jnp.ones((5, 3))
    model = nn.Sequential([nn.Dense(4), jnp.tanh, nn.Dense(2)])
    params = model.init(jax.random.key(0), x)["params"]

    def apply(p, xx):
        return model.apply({"params": jax.tree.map(lambda a: 2 * a, p)}, xx)

    assert not gnuq.dense_applies(apply, params, x)
    with pytest.raises(ValueError, match="computed from params"):
        gnuq.uncertainty(apply, params, x, likelihood="categorical", method="dense")
    auto = gnuq.uncertainty(apply, params, x, likelihood="categorical")
    vmap = gnuq.uncertainty(apply, params, x, likelihood="categorical", method="vmap")
    np.testing.assert_allclose(auto.epistemic, vmap.epistemic, rtol=1e-5)


def test_dense_serves_a_users_own_linen_model():
    class Custom(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Dense(7, name="first")(x))
            h = jnp.concatenate([h, jnp.sin(x)], axis=-1)  # any per-example function in between
            return nn.Dense(3, use_bias=False)(h)

    module = Custom()
    x = _inputs(11, jnp.float32)
    params = module.init(jax.random.key(2), x)["params"]

    def apply(p, xx):
        return module.apply({"params": p}, xx)

    assert gnuq.dense_applies(apply, params, x)
    d = gnuq.squared_grad_norms(apply, params, x, likelihood="categorical", method="dense")
    v = gnuq.squared_grad_norms(apply, params, x, likelihood="categorical", method="vmap")
    np.testing.assert_allclose(d, v, rtol=1e-4)


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def binary_model():
    return _model((4,), 1, jnp.float32)


def test_bad_inputs_raise_clear_errors(binary_model):
    m = binary_model
    ok = _inputs(5, jnp.float32)
    cases = [
        (dict(x=ok[0]), "leading batch axis"),
        (dict(x=jnp.ones((5, 4))), "feature count"),
        (dict(x=ok[:0]), "empty batch"),
        (dict(x=ok.at[2, 1].set(jnp.nan)), r"NaN or inf in rows \[2\]"),
        (dict(likelihood="poisson"), "unknown likelihood"),
        (dict(likelihood="categorical"), r"\[N, C\] with C >= 2"),
        (dict(method="fast"), "unknown method"),
        (dict(noise_var=1.0), "only meaningful for the gaussian"),
    ]
    for kwargs, message in cases:
        args = dict(x=ok, likelihood="bernoulli") | kwargs
        with pytest.raises(ValueError, match=message):
            gnuq.uncertainty(m.apply, m.params, **args)
    bad_params = jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.inf), m.params)
    with pytest.raises(ValueError, match=r"params.*NaN or inf"):
        gnuq.uncertainty(m.apply, bad_params, ok, likelihood="bernoulli")


# --- sequences -------------------------------------------------------------------------------

VOCAB, HIDDEN = 7, 5


class _TinyCausalLM(nn.Module):
    """Embedding, a causal running mean, a tanh Dense layer and an output layer."""

    @nn.compact
    def __call__(self, tokens):  # [B, T] -> [B, T, V]
        e = nn.Embed(VOCAB, HIDDEN)(tokens)
        h = jnp.cumsum(e, axis=1) / jnp.arange(1, tokens.shape[1] + 1)[None, :, None]
        return nn.Dense(VOCAB)(jnp.tanh(nn.Dense(HIDDEN)(h)))


def _tiny_lm():
    module = _TinyCausalLM()
    tokens = jnp.array([[1, 2, 3, 3, 3, 0], [4, 5, 2, 6, 0, 0]])
    mask = jnp.array([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0]])
    params = module.init(jax.random.key(3), tokens)["params"]
    return module, params, tokens, mask


def test_sequence_estimator_matches_brute_force_gradient():
    with jax.enable_x64(True):
        module, params, tokens, mask = _tiny_lm()
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)

        def apply(p, t):
            return module.apply({"params": p}, t)

        def token_prob(p, b, t):  # written independently of the estimator: one position
            logits = apply(p, tokens[b : b + 1, :t])[0, -1]
            return jax.nn.softmax(logits)[tokens[b, t]]

        seq = gnuq.sequence_uncertainty(apply, params, tokens, mask)
        per = gnuq.sequence_uncertainty(apply, params, tokens, mask, per_token=True)
        for b in range(tokens.shape[0]):
            positions = [int(t) for t in np.flatnonzero(np.asarray(mask[b]))]
            probs = np.array([token_prob(params, b, t) for t in positions])
            grads = [
                ravel_pytree(jax.grad(token_prob)(params, b, t))[0] for t in positions
            ]  # grad p_t, one backward pass per token
            g_bar = sum(grads) / len(grads)
            np.testing.assert_allclose(seq.probs[b], probs.mean(), rtol=1e-12)
            np.testing.assert_allclose(seq.aleatoric[b], np.mean(probs * (1 - probs)), rtol=1e-12)
            np.testing.assert_allclose(seq.epistemic[b], g_bar @ g_bar, rtol=1e-10)
            per_token = np.mean([g @ g for g in grads])
            np.testing.assert_allclose(per.epistemic[b], per_token, rtol=1e-10)
            # ||grad p_bar||^2 = (sum_t ||g_t||^2 + sum_{s != t} g_s.g_t) / T^2: the cross-terms
            # are what separates the two estimators
            T = len(grads)
            cross = sum(grads[s] @ grads[t] for s in range(T) for t in range(T) if s != t)
            np.testing.assert_allclose(
                seq.epistemic[b] * T**2 - per.epistemic[b] * T, cross, rtol=1e-8
            )


def test_sequence_cross_terms_matter_when_tokens_repeat():
    """Answer '3 3 3' predicts the same token thrice from similar states: the per-token gradients
    align, so ||grad p_bar||^2 clearly exceeds the no-cross-term value (1/T^2) sum_t ||g_t||^2."""
    module, params, tokens, mask = _tiny_lm()

    def apply(p, t):
        return module.apply({"params": p}, t)

    seq = gnuq.sequence_uncertainty(apply, params, tokens[:1], mask[:1])
    per = gnuq.sequence_uncertainty(apply, params, tokens[:1], mask[:1], per_token=True)
    T = 3
    no_cross = per.epistemic[0] / T
    assert seq.epistemic[0] > 1.5 * no_cross


def test_sequence_bad_input():
    module, params, tokens, mask = _tiny_lm()

    def apply(p, t):
        return module.apply({"params": p}, t)

    with pytest.raises(ValueError, match="no answer tokens"):
        gnuq.sequence_uncertainty(apply, params, tokens, mask.at[1].set(0))
    with pytest.raises(ValueError, match="first token"):
        gnuq.sequence_uncertainty(apply, params, tokens, mask.at[0, 0].set(1))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        gnuq.sequence_uncertainty(apply, params, tokens[0], mask[0])
    with pytest.raises(ValueError, match="integer"):
        gnuq.sequence_uncertainty(apply, params, tokens.astype(float), mask)
