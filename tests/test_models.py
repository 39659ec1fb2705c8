"""Parameter counts against the paper's (REPRODUCTION.md section 2) and the model interface."""

import jax
import jax.numpy as jnp
import pytest

from gnuq import models

PAPER_COUNTS = [
    (2, (32, 32), 1, 1185),  # proxy-bias MLP
    (1, (32,), 1, 97),  # regression MLP
    (1, (), 1, 2),  # linear regression
    (2, (), 4, 12),  # softmax regression, scaling sweep
    (2, (8, 8), 4, 132),
    (2, (16, 16), 4, 388),
    (2, (32, 32), 4, 1284),
    (2, (64, 64), 4, 4612),
    (2, (128, 128), 4, 17412),
    (2, (256, 256), 4, 67588),
    (2, (512, 512), 4, 266244),
    (2, (1028, 1028), 4, 1065012),
]


@pytest.mark.parametrize("input_dim,widths,outputs,count", PAPER_COUNTS)
def test_parameter_counts_match_the_paper(input_dim, widths, outputs, count):
    assert models.mlp_param_count(input_dim, widths, outputs) == count
    if count < 300_000:  # building the largest one is covered by the benchmark
        m = models.mlp(jax.random.key(0), input_dim, widths, outputs)
        assert models.count_params(m.params) == count


def test_largest_model_builds_with_the_paper_count():
    m = models.mlp(jax.random.key(0), 2, (1028, 1028), 4)
    assert models.count_params(m.params) == 1_065_012


def test_apply_is_pure_and_hashable():
    m = models.mlp(jax.random.key(0), 2, (8,), 3, "relu", jnp.float32)
    x = jnp.ones((5, 2))
    assert m.apply(m.params, x).shape == (5, 3)
    again = models.mlp(jax.random.key(0), 2, (8,), 3, "relu", jnp.float32)
    assert hash(m.apply) == hash(again.apply) and m.apply == again.apply
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), m.params, again.params))


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown activation"):
        models.mlp(jax.random.key(0), 2, (8,), 1, "swish9")
    with pytest.raises(ValueError, match="positive"):
        models.mlp(jax.random.key(0), 2, (0,), 1)
