"""Array and function aliases used across gnuq."""

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
ApplyFn = Callable[[Params, Array], Array]  # apply(params, x[N, ...]) -> outputs[N, ...]
