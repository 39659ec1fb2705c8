"""Chunked maps and sums against the unchunked computation."""

import jax.numpy as jnp
import numpy as np
import pytest

from gnuq import chunking


@pytest.mark.parametrize(("n", "chunk"), [(1, 4), (7, 3), (12, 4), (2500, 2048), (5, 100)])
def test_chunked_map_and_sum_equal_the_whole_batch(n, chunk):
    x = jnp.arange(n * 2, dtype=jnp.float32).reshape(n, 2)
    np.testing.assert_array_equal(chunking.chunked_map(lambda b: b**2, x, chunk), x**2)
    total = chunking.chunked_sum(lambda b, ok: jnp.sum(b * ok[:, None], axis=0), x, chunk)
    np.testing.assert_allclose(total, x.sum(axis=0))
