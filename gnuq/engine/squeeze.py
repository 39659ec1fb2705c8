"""Bind a jaxpr equation with its size-1 axes squeezed out, where they would cost time.

The engine evaluates a model on a batch of ONE example under ``vmap``, so every activation
carries a size-1 axis (``[n, 1, d]``), and so do the per-row statistics of a normalisation
(``[n, 1, 1]``). XLA's CPU backend (YNNPACK fusions, jaxlib 0.10) reduces and broadcasts such
shapes several times slower than the same shapes without the size-1 axes: a LayerNorm MLP's
tapped forward + K backward passes took 3x the plain batched passes. Reductions, broadcasts and
implicitly broadcasting elementwise ops are therefore bound on reshaped (squeezed) operands and
reshaped back; their transposes in the backward pass then squeeze too. Reshapes of contiguous
arrays are free, and the values are the same.
"""

import jax
import numpy as np
from jax import lax
from jax.extend.core import Literal

_REDUCE = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or"}
# elementwise, shape-independent parameters; lax lets their operands broadcast size-1 axes
_ELEMENTWISE = {
    "add", "sub", "mul", "div", "max", "min", "pow", "atan2", "rem", "nextafter", "and", "or",
    "xor", "eq", "ne", "lt", "le", "gt", "ge",
}  # fmt: skip


def _kept(shape) -> list[int]:
    return [ax for ax, s in enumerate(shape) if s != 1]


def _squeezed(x, shape):
    return lax.reshape(x, tuple(shape[ax] for ax in _kept(shape)))


def _reduce(eqn, x):
    shape = np.shape(x)
    kept = _kept(shape)
    axes = tuple(kept.index(ax) for ax in eqn.params["axes"] if shape[ax] != 1)
    y = _squeezed(x, shape)
    if axes:
        params = {**eqn.params, "axes": axes}
        y = eqn.primitive.bind(y, **eqn.primitive.get_bind_params(params))
    return lax.reshape(y, eqn.outvars[0].aval.shape)


def _broadcast(eqn, x):
    shape, out = np.shape(x), eqn.outvars[0].aval.shape
    kept_out = _kept(out)
    dims = eqn.params["broadcast_dimensions"]
    new_dims = tuple(kept_out.index(dims[ax]) for ax in _kept(shape))
    y = lax.broadcast_in_dim(_squeezed(x, shape), tuple(out[ax] for ax in kept_out), new_dims)
    return lax.reshape(y, out)


def _elementwise(eqn, invals):
    out = eqn.outvars[0].aval.shape
    target = tuple(out[ax] for ax in _kept(out))
    operands = []
    for x in invals:
        if np.ndim(x) == 0:
            operands.append(x)
            continue
        y = lax.reshape(x, tuple(np.shape(x)[ax] for ax in _kept(out)))  # only 1s dropped
        if y.shape != target:
            inner = _kept(y.shape)
            y = lax.broadcast_in_dim(_squeezed(y, y.shape), target, tuple(inner))
        operands.append(y)
    y = eqn.primitive.bind(*operands, **eqn.primitive.get_bind_params(eqn.params))
    return lax.reshape(y, out)


def squeezable(eqn, invals) -> bool:
    """Whether ``bind`` rewrites ``eqn``: size-1 axes around a reduction or a broadcast."""
    name = eqn.primitive.name
    if len(eqn.outvars) != 1 or eqn.params.get("sharding") is not None:
        return False
    out = eqn.outvars[0].aval.shape
    if name in _REDUCE:
        return 1 in np.shape(invals[0])
    if name == "broadcast_in_dim":
        return len(invals) == 1 and 1 in (*np.shape(invals[0]), *out)
    if name in _ELEMENTWISE:
        shapes = {np.shape(x) for x in invals if np.ndim(x)}
        return 1 in out and len(shapes) > 1 and all(len(sh) == len(out) for sh in shapes)
    return False


def bind(eqn, invals) -> list:
    """``eqn``'s outputs on ``invals``, squeezed where ``squeezable``."""
    with eqn.ctx.manager:
        if squeezable(eqn, invals):
            name = eqn.primitive.name
            if name in _REDUCE:
                return [_reduce(eqn, invals[0])]
            if name == "broadcast_in_dim":
                return [_broadcast(eqn, invals[0])]
            return [_elementwise(eqn, invals)]
        out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def squeezed(fn):
    """``fn`` evaluated equation by equation through ``bind`` (calls inlined), for code that
    runs per example under ``vmap``."""

    def run(*args):
        closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        outs = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(shape), outs)

    return run


def _evaluate(jaxpr, consts, args) -> list:
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for v, val in zip((*jaxpr.constvars, *jaxpr.invars), (*consts, *args), strict=True):
        env[v] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if eqn.primitive.name in ("jit", "pjit", "closed_call"):
            sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            outs = _evaluate(sub.jaxpr, sub.consts, invals)
        else:
            outs = bind(eqn, invals)
        for v, val in zip(eqn.outvars, outs, strict=True):
            env[v] = val
    return [read(v) for v in jaxpr.outvars]
