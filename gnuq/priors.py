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


def scaled(model: Model, stds: Params) -> PriorScaled:
    """``model`` under the prior N(0, stds^2) per leaf (``stds``: a float per leaf, the params'
    structure), rewritten as ``W = stds * V``; the initial ``V`` is the initial params mapped
    back, so both start from the same function."""
    leaves, treedef = jax.tree.flatten(model.params)
    factors = tuple(float(f) for f in treedef.flatten_up_to(stds))
    if not all(f > 0 and np.isfinite(f) for f in factors):
        raise ValueError(f"prior scales must be positive and finite, got {factors}")
    apply = _ScaledApply(model.apply, factors, treedef)
    params_v = jax.tree.unflatten(
        treedef, [leaf / f for leaf, f in zip(leaves, factors, strict=True)]
    )
    return PriorScaled(Model(apply, params_v), apply.to_original)


def width_scaled_stds(params: Params, scale: float = 1.0, bias_scale: float = 1.0) -> Params:
    """The width-scaled prior of the neural-tangent literature on a Dense network: standard
    deviation ``scale / sqrt(fan_in)`` for every kernel (a leaf with two or more axes, fan-in on
    the first), ``bias_scale`` for every other leaf. ``scaled(model, stds)`` applies it."""
    if not (scale > 0 and bias_scale > 0):
        raise ValueError(f"prior scales must be positive, got scale={scale}, bias={bias_scale}")
    return jax.tree.map(
        lambda leaf: scale / np.sqrt(leaf.shape[0]) if leaf.ndim >= 2 else bias_scale, params
    )


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
