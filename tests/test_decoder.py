"""gnuq.decoder on tiny random Llama and Gemma 3 configs. Ground truths: the uncached forward
(for the cached one and for generation), the definition of causal and sliding-window attention
(which inputs may change which logits), and ``jax.grad`` (for sequence_uncertainty)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gnuq import sequence_uncertainty
from gnuq.pretrained import decoder

LLAMA = decoder.DecoderConfig(
    arch="llama", vocab_size=61, hidden=24, layers=2, heads=4, kv_heads=2, head_dim=8,
    intermediate=40, eps=1e-5, rope_theta=100.0,
)  # fmt: skip
GEMMA = decoder.DecoderConfig(
    arch="gemma3", vocab_size=61, hidden=24, layers=3, heads=4, kv_heads=1, head_dim=8,
    intermediate=40, eps=1e-6, rope_theta=1000.0, rope_theta_local=10.0, sliding_window=4,
    global_every=3, query_pre_attn_scalar=12.0, final_softcap=5.0,
)  # fmt: skip
CONFIGS = {"llama": LLAMA, "gemma3": GEMMA}
TOL = {"atol": 2e-5, "rtol": 1e-4}  # float32; the cached path sums over padded slots
forward = jax.jit(decoder.logits, static_argnames="cfg")  # eager scans would be slow


def setup(name: str, seed: int = 0, length: int = 12, batch: int = 2):
    cfg = CONFIGS[name]
    params = decoder.init(jax.random.key(seed), cfg)
    # scale the weights up: at init scale 0.02 every logit is near 0 and differences hide
    params = jax.tree_util.tree_map(lambda x: x * 8 if x.ndim == 3 else x, params)
    params["embed"] = params["embed"] * 20
    tokens = jax.random.randint(jax.random.key(seed + 1), (batch, length), 0, cfg.vocab_size)
    return cfg, params, tokens


def test_gemma_layer_pattern():
    assert GEMMA.local_layers().tolist() == [True, True, False]
    real = dataclasses.replace(GEMMA, layers=18, sliding_window=512, global_every=6)
    assert np.flatnonzero(~real.local_layers()).tolist() == [5, 11, 17]
    assert not LLAMA.local_layers().any()


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_decoding_matches_uncached_forward(name):
    # prompt of 5 tokens, then one token at a time up to 12 (> the window of 4 on Gemma)
    cfg, params, tokens = setup(name)
    full = forward(params, tokens, cfg)
    first, cache = decoder.prefill(params, tokens[:, :5], cfg, cache_size=16)
    steps = [first]
    for t in range(5, tokens.shape[1]):
        step, cache = decoder.decode_step(params, cache, tokens[:, t], cfg)
        steps.append(step[:, None])
        if t == 5:
            compiled = decoder.decode_step._cache_size()
    assert decoder.decode_step._cache_size() == compiled  # no recompilation after the first step
    assert int(cache.length) == tokens.shape[1]
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, **TOL)


@pytest.mark.parametrize("name", CONFIGS)
def test_causality(name):
    cfg, params, tokens = setup(name)
    changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % cfg.vocab_size)
    a, b = forward(params, tokens, cfg), forward(params, changed, cfg)
    np.testing.assert_array_equal(a[:, :7], b[:, :7])
    assert not np.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("layers", [1, 2])
def test_sliding_window_limits_what_a_token_sees(layers):
    # all layers local, window w: after L layers position t sees back to t - L (w - 1)
    w, t = 4, 11
    cfg = dataclasses.replace(GEMMA, layers=layers, global_every=0, sliding_window=w)
    assert cfg.local_layers().all()
    _, params, tokens = setup("gemma3")
    params = decoder.init(jax.random.key(3), cfg)
    params = jax.tree_util.tree_map(lambda x: x * 8 if x.ndim == 3 else x, params)
    params["embed"] = params["embed"] * 20
    reach = layers * (w - 1)
    base = forward(params, tokens, cfg)[:, t]

    def logits_after_changing(pos: int) -> jax.Array:
        changed = tokens.at[:, pos].set((tokens[:, pos] + 1) % cfg.vocab_size)
        return forward(params, changed, cfg)[:, t]

    for pos in range(t - reach):  # out of reach: unchanged, bit for bit
        np.testing.assert_array_equal(logits_after_changing(pos), base)
    assert not np.allclose(logits_after_changing(t - reach), base)  # the farthest one it sees
    everything = dataclasses.replace(cfg, sliding_window=0)  # same weights, global attention
    changed = tokens.at[:, 0].set((tokens[:, 0] + 1) % cfg.vocab_size)
    assert not np.allclose(
        forward(params, changed, everything)[:, t],
        forward(params, tokens, everything)[:, t],
    )


def test_language_model_plugs_into_sequence_uncertainty():
    cfg, params, tokens = setup("gemma3", length=8, batch=1)  # the plumbing is arch-independent
    apply = decoder.language_model(cfg)
    assert decoder.language_model(cfg) is apply  # cached: jit caches keyed on it hit
    mask = jnp.zeros_like(tokens).at[:, 5:].set(1)
    out = sequence_uncertainty(apply, params, tokens, mask)

    def mean_prob(p):  # the reference: p_bar over the answer tokens, differentiated directly
        probs = jax.nn.softmax(decoder.logits(p, tokens, cfg)[0, 4:7], axis=-1)
        return jnp.mean(probs[jnp.arange(3), tokens[0, 5:8]])

    grad = jax.jit(jax.grad(mean_prob))(params)
    expected = sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grad))
    np.testing.assert_allclose(out.epistemic[0], expected, rtol=1e-4)
    np.testing.assert_allclose(out.probs[0], jax.jit(mean_prob)(params), rtol=1e-5)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="arch"):
        dataclasses.replace(LLAMA, arch="gpt2")
    with pytest.raises(ValueError, match="kv_heads"):
        dataclasses.replace(LLAMA, kv_heads=3)
