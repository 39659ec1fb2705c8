"""gnuq.pretrained.generation on the tiny random decoders of tests/test_decoder.py. Ground truth:
the uncached forward, recomputed over the whole sequence for every new token."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_decoder import CONFIGS, forward, setup

from gnuq.pretrained import generation


@pytest.mark.parametrize("name", CONFIGS)
def test_greedy_generation_is_argmax_of_the_uncached_forward(name):
    cfg, params, tokens = setup(name, length=5, batch=1)
    new = generation.generate_greedy(params, tokens[0].tolist(), cfg, max_new_tokens=9)
    seq = np.zeros((1, 14), np.int32)  # one shape: the padding after t cannot change logits[t]
    seq[0, :5] = tokens[0]
    for t in range(5, 14):  # the reference: recompute the whole forward for every token
        seq[0, t] = int(jnp.argmax(forward(params, jnp.asarray(seq), cfg)[0, t - 1]))
    assert new == seq[0, 5:].tolist()


def test_generation_stops_on_end_tokens():
    cfg, params, tokens = setup("llama", length=5, batch=1)
    free = generation.generate_greedy(params, tokens[0].tolist(), cfg, max_new_tokens=9)
    stop = free[3]
    first = free.index(stop)
    gen = generation.generate(params, tokens, jax.random.key(0), cfg, 9, (stop,), pad=-1)
    assert int(gen.lengths[0]) == first + 1
    assert gen.tokens[0, first] == stop and (gen.tokens[0, first + 1 :] == -1).all()
    assert generation.generate_greedy(params, tokens[0].tolist(), cfg, 9, (stop,)) == free[:first]


def test_sampling_is_reproducible_and_follows_the_key():
    cfg, params, tokens = setup("gemma3", length=5, batch=1)
    prompt = tokens[0].tolist()
    a = generation.sample(params, prompt, jax.random.key(1), cfg, 8, temperature=1.0, num_samples=4)
    b = generation.sample(params, prompt, jax.random.key(1), cfg, 8, temperature=1.0, num_samples=4)
    c = generation.sample(params, prompt, jax.random.key(2), cfg, 8, temperature=1.0, num_samples=4)
    assert a == b and a != c and len(a) == 4 and all(len(s) == 8 for s in a)
    cold = generation.sample(params, prompt, jax.random.key(1), cfg, 8, temperature=1e-4)
    assert cold[0] == generation.generate_greedy(params, prompt, cfg, 8)  # T -> 0 is greedy


def test_generation_logprobs_are_the_models_at_temperature_one():
    """The log-probability reported for every new token, sampled at temperature 2 from a padded
    prompt, equals log_softmax of the uncached forward at that position."""
    cfg, params, tokens = setup("gemma3", length=5, batch=1)
    padded, length = generation.bucketed(tokens[0].tolist(), multiple=8)
    gen = generation.generate(
        params, padded[None], jax.random.key(3), cfg, 6, temperature=2.0, length=length
    )
    seq = jnp.concatenate([tokens[0], gen.tokens[0]])[None]
    logp = jax.nn.log_softmax(forward(params, seq, cfg)[0, 4:10], axis=-1)
    expected = logp[jnp.arange(6), gen.tokens[0]]
    np.testing.assert_allclose(gen.logprobs[0], expected, atol=2e-5)
