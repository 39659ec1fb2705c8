"""Bounded-memory maps and sums over the leading (example) axis, inside ``jit``."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gnuq.types import Array


def _split(xs, chunk: int):
    """Pad (repeating the last row) and reshape every leaf to ``[n_chunks, size, ...]``, with
    ``size <= chunk`` as even as the chunks allow (10 000 rows at chunk 1085: 10 x 1000)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    n_chunks = -(-n // max(1, min(chunk, n)))
    chunk = -(-n // n_chunks)  # the same number of chunks with the least padding
    pad = n_chunks * chunk - n

    def split(a: Array) -> Array:
        a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
        return a.reshape(n_chunks, chunk, *a.shape[1:])

    valid = (jnp.arange(n_chunks * chunk) < n).reshape(n_chunks, chunk)
    return jax.tree.map(split, xs), valid, n


def chunked_map(fn: Callable, xs, chunk: int):
    """``fn`` (batched over the leading axis) applied ``chunk`` rows at a time (``lax.map``).

    The tail is padded by repeating the last row, so padding never feeds the model new values.
    """
    parts, _, n = _split(xs, chunk)
    out = jax.lax.map(fn, parts)
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)


def chunked_sum(fn: Callable, xs, chunk: int):
    """``sum over chunks of fn(batch, valid)``; ``valid [chunk]`` is False on padding rows,
    which ``fn`` must leave out of its sum."""
    parts, valid, _ = _split(xs, chunk)
    first = jax.tree.map(lambda a: a[0], parts)
    total = fn(first, valid[0])
    rest = jax.tree.map(lambda a: a[1:], parts)

    def step(acc, batch):
        part, ok = batch
        return jax.tree.map(jnp.add, acc, fn(part, ok)), None

    total, _ = jax.lax.scan(step, total, (rest, valid[1:]))
    return total
