"""Priors other than the isotropic one, written as a change of coordinates.

Every sampler, MAP fit and Laplace approximation in gnuq assumes N(0, I / prior_precision) on the
params it is given. A Gaussian prior with another scale per leaf is the isotropic prior on params
``V`` with ``W = s * V``: hand gnuq the rewritten model, and the posterior, the MAP and the
predictive are those of the original network under the scaled prior (the change is linear, so
its Jacobian is a constant).
"""

import dataclasses
from typing import NamedTuple

import jax
import numpy as np

from gnuq.models import Model
from gnuq.types import Array, Params


class PriorScaled(NamedTuple):
    """A model rewritten as ``W = s * V`` per leaf, so that N(0, I) on ``V`` is N(0, s^2) on ``W``.

    ``model.apply(V, x)`` is the original network at ``to_original(V)``; sample, fit and take
    gradient norms in ``V``. The isotropic gradient norm in ``V`` is the norm in the prior's
    metric, ``sum_l s_l^2 ||grad_{W_l} p||^2``.
    """

    model: Model
    to_original: object  # V -> W, a pure function of the params pytree


def width_scaled(model: Model, scale: float = 1.0, bias_scale: float = 1.0) -> PriorScaled:
    """The width-scaled prior of the neural-tangent literature on a Dense network.

    Every kernel (a leaf with two or more axes, fan-in on the first) gets prior standard deviation
    ``scale / sqrt(fan_in)``; every other leaf (biases) ``bias_scale``. The model is written in the
    neural-tangent parametrisation ``W = scale * V / sqrt(fan_in)``; the initial ``V`` is the
    original initial params mapped back, so both start from the same function.
    """
    if not (scale > 0 and bias_scale > 0):
        raise ValueError(f"prior scales must be positive, got scale={scale}, bias={bias_scale}")
    leaves, treedef = jax.tree.flatten(model.params)
    factors = tuple(
        float(scale / np.sqrt(leaf.shape[0])) if leaf.ndim >= 2 else float(bias_scale)
        for leaf in leaves
    )
    apply = _ScaledApply(model.apply, factors, treedef)
    params_v = jax.tree.unflatten(
        treedef, [leaf / f for leaf, f in zip(leaves, factors, strict=True)]
    )
    return PriorScaled(Model(apply, params_v), apply.to_original)


@dataclasses.dataclass(frozen=True)
class _ScaledApply:
    """``apply(V, x) = original(s * V, x)``; hashable (python floats and a treedef)."""

    original: object
    factors: tuple[float, ...]
    treedef: object

    def to_original(self, params: Params) -> Params:
        leaves = self.treedef.flatten_up_to(params)
        return jax.tree.unflatten(
            self.treedef, [f * leaf for leaf, f in zip(leaves, self.factors, strict=True)]
        )

    def __call__(self, params: Params, x: Array) -> Array:
        return self.original(self.to_original(params), x)
