"""Text generation with ``gnuq.pretrained.decoder``: the whole decoding loop in one ``jax.jit``.

``generate`` runs the prompt through the decoder's key/value-cached forward (``prefill``'s
layers) and then decodes token by token inside a ``lax.while_loop`` that stops early when every
row has emitted a stop token: greedy (argmax) at temperature 0, else sampled from
softmax(logits / temperature). Prompts are right-padded to a multiple of ``BUCKET`` tokens
(``bucketed``) and their true length passed as a traced value, so prompts of many lengths share
one compilation. ``generate_greedy`` and ``sample`` wrap it for one prompt given as token ids.
"""

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gnuq.pretrained import decoder
from gnuq.types import Array, Params, PRNGKey

BUCKET = 32  # prompts are padded to a multiple of this many tokens (compilations per bucket)


class Generation(NamedTuple):
    """``tokens [B, N]`` new tokens (``pad`` after a stop token; the stop token itself is kept),
    ``lengths [B]`` number of tokens up to and including the stop token, ``logprobs [B, N]`` the
    model's log-probability of each new token (at temperature 1, whatever the sampling
    temperature; 0 after the stop)."""

    tokens: Array
    lengths: Array
    logprobs: Array


@functools.partial(
    jax.jit, static_argnames=("cfg", "max_new_tokens", "stop_ids", "temperature", "pad")
)
def generate(
    params: Params,
    prompt: Array,
    key: PRNGKey,
    cfg: decoder.DecoderConfig,
    max_new_tokens: int,
    stop_ids: tuple[int, ...] = (),
    temperature: float = 0.0,
    pad: int = 0,
    length: Array | None = None,
) -> Generation:
    """Continue ``prompt [B, T]`` (rows of equal length) by at most ``max_new_tokens`` tokens:
    greedy (argmax) when ``temperature == 0``, else sampled from softmax(logits / temperature)
    with ``key``. A row stops after emitting any of ``stop_ids``; the loop ends when all have.
    One compilation per (B, T, max_new_tokens, ...); the loop is a ``lax.while_loop``.

    ``length`` (traced, <= T): only the first ``length`` prompt tokens count, the rest is padding,
    so prompts of many lengths share one compilation. Padding is causal-invisible to the real
    tokens, and decoding overwrites its cache slots before any query can see them."""
    b, t = prompt.shape
    cache = decoder.empty_cache(cfg, b, t + max_new_tokens, params["embed"].dtype)
    x, cache = decoder.cached_hidden_states(params, prompt, cache, cfg)
    n = jnp.asarray(t if length is None else length, jnp.int32)
    cache = cache._replace(length=n)
    last = jax.lax.dynamic_index_in_dim(x, n - 1, axis=1, keepdims=False)
    stops = jnp.asarray(stop_ids or (-1,), jnp.int32)

    def pick(last_logits: Array, key: PRNGKey) -> Array:
        if temperature == 0.0:
            return jnp.argmax(last_logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, last_logits / temperature, axis=-1).astype(jnp.int32)

    def cond(state) -> Array:
        i, _, _, _, done, *_ = state
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(state):
        i, cache, out, logprobs, done, lengths, last_logits, key = state
        key, sub = jax.random.split(key)
        token = jnp.where(done, pad, pick(last_logits, sub))
        out = out.at[:, i].set(token)
        logp = jnp.take_along_axis(
            jax.nn.log_softmax(last_logits, axis=-1), jnp.maximum(token, 0)[:, None], axis=-1
        )[:, 0]
        logprobs = logprobs.at[:, i].set(jnp.where(done, 0.0, logp))
        lengths = jnp.where(done, lengths, i + 1)
        done = done | jnp.isin(token, stops)
        x, cache = decoder.cached_hidden_states(params, token[:, None], cache, cfg)
        last_logits = decoder.unembed(params, x[:, 0], cfg)
        return i + 1, cache, out, logprobs, done, lengths, last_logits, key

    out = jnp.full((b, max_new_tokens), pad, jnp.int32)
    zeros = jnp.zeros(b, jnp.int32)
    logprobs = jnp.zeros((b, max_new_tokens), jnp.float32)
    first = decoder.unembed(params, last, cfg)
    state = (0, cache, out, logprobs, jnp.zeros(b, bool), zeros, first, key)
    _, _, out, logprobs, _, lengths, _, _ = jax.lax.while_loop(cond, body, state)
    return Generation(out, lengths, logprobs)


def generate_greedy(
    params: Params,
    prompt: Sequence[int],
    cfg: decoder.DecoderConfig,
    max_new_tokens: int,
    stop_ids: Sequence[int] = (),
) -> list[int]:
    """Greedy continuation of one prompt, as a list of new token ids without the stop token."""
    tokens, length = bucketed(prompt)
    gen = generate(
        params,
        tokens[None],
        jax.random.key(0),  # unused by argmax
        cfg,
        max_new_tokens,
        tuple(stop_ids),
        length=length,
    )
    return _strip(np.asarray(gen.tokens[0])[: int(gen.lengths[0])], stop_ids)


def sample(
    params: Params,
    prompt: Sequence[int],
    key: PRNGKey,
    cfg: decoder.DecoderConfig,
    max_new_tokens: int,
    stop_ids: Sequence[int] = (),
    temperature: float = 1.0,
    num_samples: int = 1,
) -> list[list[int]]:
    """``num_samples`` continuations of one prompt sampled at ``temperature`` (one batched run),
    each a list of new token ids without the stop token."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
    tokens, length = bucketed(prompt)
    tokens = jnp.broadcast_to(tokens, (num_samples, tokens.size))
    gen = generate(
        params,
        tokens,
        key,
        cfg,
        max_new_tokens,
        tuple(stop_ids),
        float(temperature),
        length=length,
    )
    out, lengths = np.asarray(gen.tokens), np.asarray(gen.lengths)
    return [_strip(row[:n], stop_ids) for row, n in zip(out, lengths, strict=True)]


def bucketed(tokens: Sequence[int], multiple: int = BUCKET) -> tuple[Array, Array]:
    """``tokens`` right-padded with 0 to a multiple of ``multiple``, and their count: one
    compilation serves every length in a bucket."""
    n = len(tokens)
    if n == 0:
        raise ValueError("empty prompt")
    padded = np.zeros(-(-n // multiple) * multiple, np.int32)
    padded[:n] = tokens
    return jnp.asarray(padded), jnp.asarray(n, jnp.int32)


def _strip(tokens: np.ndarray, stop_ids: Sequence[int]) -> list[int]:
    tokens = tokens.tolist()
    return tokens[:-1] if tokens and tokens[-1] in stop_ids else tokens
