"""Flax models used by the experiments, exposed as a pure ``apply(params, x)`` plus a params pytree.

Linen fits gnuq's functional interface directly: ``module.apply({"params": params}, x)`` is a pure
function of a plain pytree, which is what ``jax.grad``, BlackJAX and the estimators consume. Every
model here keeps all its parameters in ``nn.Dense`` layers, so the fast dense estimator applies.
"""

import dataclasses
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gnuq.types import Array, Params, PRNGKey

ACTIVATIONS = {"tanh": jnp.tanh, "relu": nn.relu, "gelu": nn.gelu, "softplus": nn.softplus}


class MLP(nn.Module):
    """``in -> widths[0] -> ... -> widths[-1] -> num_outputs``; no hidden layers = a GLM.

    With ``widths=()`` this is logistic regression (``num_outputs=1``), softmax regression
    (``num_outputs=C``) or linear regression.
    """

    widths: Sequence[int]
    num_outputs: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        act = ACTIVATIONS[self.activation]
        for width in self.widths:
            x = act(nn.Dense(width)(x))
        return nn.Dense(self.num_outputs)(x)


class Model(NamedTuple):
    """A pure ``apply(params, x)`` and the initial params it was built with."""

    apply: object  # ApplyFn
    params: Params


def mlp(
    key: PRNGKey,
    input_dim: int,
    widths: Sequence[int],
    num_outputs: int,
    activation: str = "tanh",
    dtype=jnp.float32,
) -> Model:
    """Build an MLP, initialised with Flax's defaults (LeCun-normal kernels, zero biases)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if input_dim < 1 or num_outputs < 1 or any(w < 1 for w in widths):
        raise ValueError(
            f"sizes must be positive: input_dim={input_dim}, widths={tuple(widths)}, "
            f"num_outputs={num_outputs}"
        )
    module = MLP(tuple(int(w) for w in widths), int(num_outputs), activation)
    params = module.init(key, jnp.zeros((1, input_dim), dtype))["params"]
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    return Model(_FlaxApply(module), params)


@dataclasses.dataclass(frozen=True)
class _FlaxApply:
    """``apply(params, x)`` for a linen module; hashable, so jit caches can key on it."""

    module: nn.Module

    def __call__(self, params: Params, x: Array) -> Array:
        return self.module.apply({"params": params}, x)


def count_params(params: Params) -> int:
    """Total number of scalar parameters in a pytree."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def mlp_param_count(input_dim: int, widths: Sequence[int], num_outputs: int) -> int:
    """Closed-form parameter count of ``MLP`` (weights + biases), without building it."""
    sizes = [input_dim, *widths, num_outputs]
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))
