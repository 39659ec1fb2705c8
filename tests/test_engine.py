"""gnuq.engine against the ground truth ``vmap(jacrev)`` (``method="vmap"``), float32, relative
L2 error <= 1e-5 over all examples and outputs, on every kind of model the engine reads: Flax
Dense, plain ``jnp``, LayerNorm/RMSNorm, convolutions, einsum over a sequence, embeddings of
integer tokens, layers stacked under ``lax.scan``, the tiny BERT encoder and LLM decoder, a
parameter reused (tied), and a parameter used non-linearly (that leaf falls back)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, hf_tensors

import gnuq
from gnuq import estimators, models
from gnuq.engine import norms, squeeze
from gnuq.pretrained import bert, decoder

KEY = jax.random.key(0)
X = jax.random.normal(jax.random.key(1), (7, 3))


def assert_engine_matches_vmap(apply, params, x, likelihood="categorical", served=None):
    got = gnuq.squared_grad_norms(apply, params, x, likelihood=likelihood, method="engine")
    ref = gnuq.squared_grad_norms(apply, params, x, likelihood=likelihood, method="vmap")
    rel = float(jnp.linalg.norm(got - ref) / jnp.linalg.norm(ref))
    assert rel <= 1e-5, rel
    if served is not None:
        assert gnuq.engine_coverage(apply, params, x, likelihood=likelihood) == served


def linen(module, x):
    params = module.init(KEY, x)["params"]
    return (lambda p, xx: module.apply({"params": p}, xx)), params


def test_flax_dense_mlp():
    m = models.mlp(KEY, 3, (8, 6), 4, "tanh")
    served = {f"['{layer}']['{p}']": True for layer in ("Dense_0", "Dense_1", "Dense_2")
              for p in ("bias", "kernel")}  # fmt: skip
    assert_engine_matches_vmap(m.apply, m.params, X, served=served)


def test_plain_jnp_mlp():
    k1, k2 = jax.random.split(KEY)
    params = {
        "w1": jax.random.normal(k1, (3, 8)),
        "b1": jnp.full(8, 0.1),
        "w2": jax.random.normal(k2, (8, 4)),
        "b2": jnp.ones(4),
    }

    def apply(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    assert_engine_matches_vmap(apply, params, X)


class _Norms(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm()(nn.Dense(8)(x))
        return nn.Dense(4)(nn.RMSNorm()(jnp.tanh(h)))


def test_layernorm_and_rmsnorm_mlp():
    assert_engine_matches_vmap(*linen(_Norms(), X), X)


class _Conv(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(4, (3, 3))(x))
        h = nn.relu(nn.Conv(5, (3, 3), strides=2, padding="VALID", use_bias=False)(h))
        return nn.Dense(3)(h.reshape(h.shape[0], -1))


def test_conv_net():
    x = jax.random.normal(KEY, (4, 6, 6, 2))
    assert_engine_matches_vmap(*linen(_Conv(), x), x)


def test_einsum_over_a_sequence_and_its_gram_form():
    """A [T = 4] sequence per example: the Gram form (T^2 (I + J) < T I J) and the outer form."""
    params = {"w": jax.random.normal(KEY, (3, 2, 5)), "v": jax.random.normal(KEY, (5, 4))}
    x = jax.random.normal(KEY, (6, 4, 3))

    def apply(p, xx):
        h = jnp.tanh(jnp.einsum("ntd,dhe->nthe", xx, p["w"])).sum(2)
        return jnp.mean(h, 1) @ p["v"]

    assert_engine_matches_vmap(apply, params, x)


def test_embedding_of_integer_tokens():
    params = {"emb": jax.random.normal(KEY, (10, 3)), "w": jax.random.normal(KEY, (3, 4))}
    ids = jax.random.randint(KEY, (6, 5), 0, 10).at[0].set(2)  # example 0 repeats one token

    def apply(p, t):
        return jnp.mean(jnp.tanh(p["emb"][t]), 1) @ p["w"]

    assert_engine_matches_vmap(apply, params, ids)


def test_layers_stacked_under_scan():
    params = {"ws": 0.5 * jax.random.normal(KEY, (3, 4, 4)), "out": jax.random.normal(KEY, (4, 4))}

    def apply(p, x):
        h, _ = jax.lax.scan(
            lambda h, w: (jnp.tanh(h @ w), None), jnp.pad(x, ((0, 0), (0, 1))), p["ws"]
        )
        return h @ p["out"]

    assert_engine_matches_vmap(apply, params, X)


def test_reused_and_nonlinear_parameters():
    """w is used twice (x @ w, then h @ w.T): the per-example gradient sums both uses, cross-terms
    included; s enters through exp (not linear): it alone falls back to vmap(jacrev)."""
    params = {
        "s": jnp.array(0.5),
        "v": jax.random.normal(KEY, (3, 4)),
        "w": jax.random.normal(KEY, (3, 3)),
    }

    def apply(p, x):
        h = jnp.tanh(x @ p["w"])
        return jnp.tanh(h @ p["w"].T * jnp.exp(p["s"])) @ p["v"]

    served = {"['s']": False, "['v']": True, "['w']": True}
    assert_engine_matches_vmap(apply, params, X, served=served)


def test_tiny_bert_encoder():
    cfg = bert.BertConfig.from_hf(TINY)
    params = {
        "encoder": jax.tree.map(jnp.asarray, bert.from_hf_tensors(hf_tensors(TINY, 0), cfg)),
        "head": bert.init_head(KEY, cfg.hidden),
    }
    ids = jnp.array([[2, 5, 9, 3, 0], [2, 7, 3, 0, 0], [2, 7, 3, 7, 4]])
    assert_engine_matches_vmap(bert.classifier(cfg), params, ids, likelihood="bernoulli")


def test_tiny_decoder_sequence_with_tied_embedding():
    """The LLM's embedding matrix is gathered and reused as the output layer (tied)."""
    cfg = decoder.DecoderConfig(
        arch="llama", vocab_size=61, hidden=24, layers=2, heads=4, kv_heads=2, head_dim=8,
        intermediate=40, eps=1e-5, rope_theta=100.0,
    )  # fmt: skip
    params = decoder.init(KEY, cfg)
    params = jax.tree.map(lambda a: a * 8 if a.ndim == 3 else a, params)
    params["embed"] = params["embed"] * 20
    tokens = jax.random.randint(KEY, (2, 9), 0, cfg.vocab_size)
    mask = jnp.zeros((2, 9), jnp.int32).at[:, 5:].set(1)
    lm = decoder.language_model(cfg)
    got = gnuq.sequence_uncertainty(lm, params, tokens, mask, method="engine")
    ref = gnuq.sequence_uncertainty(lm, params, tokens, mask, method="vmap")
    np.testing.assert_allclose(got.epistemic, ref.epistemic, rtol=1e-5)
    np.testing.assert_allclose(got.probs, ref.probs, rtol=1e-6)


def test_gram_and_materialised_forms_agree():
    """Both forms of one dot_general use, chosen by FLOPs, on the same activations."""
    a = jax.random.normal(KEY, (2, 5, 3))
    d = jax.random.normal(jax.random.key(2), (4, 2, 5, 7))
    g = jnp.einsum("bti,kbtj->kbij", a, d)
    expected = jnp.sum(g**2, axis=(1, 2, 3))
    np.testing.assert_allclose(norms.outer_sq(a, d), expected, rtol=1e-5)
    outer = jnp.einsum("bi,kbj->kbij", a[:, 0], d[:, :, 0])
    np.testing.assert_allclose(
        norms.outer_sq(a[:, :1], d[:, :, :1]), jnp.sum(outer**2, axis=(1, 2, 3)), rtol=1e-5
    )


def _tied_decoder(vocab: int, width: int, dtype):
    """A decoder-like toy: the embedding matrix is gathered and reused as the output layer."""
    k = jax.random.split(KEY, 2)
    params = {
        "embed": jax.random.normal(k[0], (vocab, width), dtype),
        "w": 0.3 * jax.random.normal(k[1], (width, width), dtype),
    }

    def f(p, tokens):  # [T] -> [2]: mean next-token probability and one last-position prob
        probs = jax.nn.softmax(jnp.tanh(p["embed"][tokens] @ p["w"]) @ p["embed"].T, axis=-1)
        mean = jnp.mean(jnp.take_along_axis(probs[:-1], tokens[1:, None], axis=-1))
        return jnp.stack([mean, probs[-1, 3]])

    return f, params


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize(
    ("vocab", "width", "length", "gram"), [(50, 8, 6, False), (50, 40, 3, True)]
)
def test_tied_embedding_cross_terms(monkeypatch, dtype, vocab, width, length, gram):
    """A leaf gathered and used as a dot_general: ||g_gather + g_dot||^2 with its cross term, in
    Gram form where that costs fewer FLOPs than the materialised gradient, else materialised."""
    taken = []
    multi = norms._multi_sq
    monkeypatch.setattr(
        norms, "_multi_sq", lambda *a, **kw: taken.append(out := multi(*a, **kw)) or out
    )
    with jax.enable_x64(dtype == jnp.float64):
        f, params = _tied_decoder(vocab, width, dtype)
        tokens = jax.random.randint(jax.random.key(3), (5, length), 0, vocab).at[0, :3].set(7)
        got = gnuq.engine.squared_norms(f, params, tokens)
        ref = estimators._vmap_sq_norms(f, params, tokens, 16)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert taken and all((t is not None) == gram for t in taken)


def test_squeezed_evaluation_keeps_values_and_gradients():
    """Reductions, broadcasts and broadcasting elementwise ops over size-1 axes, bound squeezed."""

    def f(x, s):  # x [1, 5, 1], s [1, 1, 1]: a per-row normalisation of a batch of one
        mu = jnp.mean(x, axis=(1, 2), keepdims=True)
        y = (x - mu) * s / jnp.max(x, axis=1, keepdims=True)
        return jnp.sum(jnp.broadcast_to(y, (1, 5, 3)) ** 2, axis=(0, 2))

    x = jax.random.normal(KEY, (4, 1, 5, 1))
    s = jnp.full((1, 1, 1), 1.5)
    got = jax.vmap(squeeze.squeezed(f), in_axes=(0, None))(x, s)
    np.testing.assert_allclose(got, jax.vmap(f, in_axes=(0, None))(x, s), rtol=1e-6)
    grad = lambda g: jax.grad(lambda xx: jnp.sum(jax.vmap(g, in_axes=(0, None))(xx, s)))(x)  # noqa: E731
    np.testing.assert_allclose(grad(squeeze.squeezed(f)), grad(f), rtol=1e-5)


# --- models that mix examples: never a per-example identity ------------------------------------


def test_batch_mixing_model_is_refused_by_every_per_example_path():
    m = models.mlp(KEY, 3, (5,), 4, "tanh")

    def centred(p, x):  # Dense layers only, but they see x minus the batch mean
        return m.apply(p, x - jnp.mean(x, axis=0))

    for method in ("auto", "engine", "dense"):
        with pytest.raises(ValueError, match="mixes examples"):
            gnuq.uncertainty(centred, m.params, X, likelihood="categorical", method=method)
    with pytest.raises(ValueError, match="mixes examples"):  # inside jit: stand-in values
        jax.jit(lambda p, x: gnuq.uncertainty(centred, p, x, likelihood="categorical").epistemic)(
            m.params, X
        )
    # vmap evaluates each example alone (documented): the centred input is then 0
    vmap = gnuq.uncertainty(centred, m.params, X, likelihood="categorical", method="vmap")
    alone = gnuq.uncertainty(m.apply, m.params, 0 * X, likelihood="categorical", method="vmap")
    np.testing.assert_allclose(vmap.epistemic, alone.epistemic, rtol=1e-6)


def test_token_model_that_mixes_examples_is_refused():
    params = {"emb": jax.random.normal(KEY, (10, 3)), "w": jax.random.normal(KEY, (3, 4))}

    def pooled_over_batch(p, t):
        h = jnp.mean(p["emb"][t], 1)
        return (h + jnp.mean(h, axis=0)) @ p["w"]

    ids = jax.random.randint(KEY, (6, 5), 0, 10)
    with pytest.raises(ValueError, match="changes with the ids"):
        gnuq.uncertainty(pooled_over_batch, params, ids, likelihood="categorical")


# --- a library that behaves --------------------------------------------------------------------


def test_runs_inside_jit():
    m = models.mlp(KEY, 3, (5,), 4, "tanh")
    eager = gnuq.uncertainty(m.apply, m.params, X, likelihood="categorical")
    jitted = jax.jit(lambda p, x: gnuq.uncertainty(m.apply, p, x, likelihood="categorical"))
    np.testing.assert_allclose(jitted(m.params, X).epistemic, eager.epistemic, rtol=1e-6)


def test_integer_inputs_on_every_path():
    """Integer features (no gradient of their own) give the values of the same floats."""
    m = models.mlp(KEY, 3, (5,), 4, "tanh")
    ids = jax.random.randint(KEY, (6, 3), -3, 4)
    ref = gnuq.squared_grad_norms(
        m.apply, m.params, ids.astype(jnp.float32), likelihood="categorical"
    )
    for method in ("auto", "dense", "vmap"):
        got = gnuq.squared_grad_norms(
            m.apply, m.params, ids, likelihood="categorical", method=method
        )
        np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_huge_finite_inputs_agree_across_paths():
    """x = 1e20: ||x||^2 overflows float32, the gradient does not (tanh saturates: 0)."""
    m = models.mlp(KEY, 3, (5,), 4, "tanh")
    x = X.at[0].set(1e20)
    ref = gnuq.squared_grad_norms(m.apply, m.params, x, likelihood="categorical", method="vmap")
    assert bool(jnp.all(jnp.isfinite(ref)))
    for method in ("engine", "dense"):
        got = gnuq.squared_grad_norms(m.apply, m.params, x, likelihood="categorical", method=method)
        np.testing.assert_allclose(got, ref, rtol=1e-5)


@pytest.mark.parametrize("chunk", [2.5, 0, -3, True, "4"])
def test_bad_chunk_size(chunk):
    m = models.mlp(KEY, 3, (5,), 4, "tanh")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        gnuq.uncertainty(m.apply, m.params, X, likelihood="categorical", chunk_size=chunk)


def test_model_that_drops_the_batch_axis_at_one_example():
    m = models.mlp(KEY, 3, (5,), 1, "tanh")
    with pytest.raises(ValueError, match=r"batch of one input.*squeeze"):
        gnuq.uncertainty(lambda p, x: m.apply(p, x).squeeze(), m.params, X, likelihood="bernoulli")
