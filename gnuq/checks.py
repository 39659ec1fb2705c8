"""What the estimators refuse before computing (shapes, NaN/inf, chunk sizes) and which
per-example path applies to a model: ``resolve_method`` probes whether the batched model mixes
examples, in which case no per-example gradient exists."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gnuq import likelihoods
from gnuq.dense import dense_obstacle
from gnuq.types import ApplyFn, Array, Params


def resolve_method(apply_fn: ApplyFn, params: Params, x: Array, method: str) -> str:
    """``"engine"``, ``"dense"`` or ``"vmap"``; raises where a per-example path would be wrong."""
    if method == "vmap":
        return method
    if method == "dense":
        reason = dense_obstacle(apply_fn, params, x)
        if reason is not None:
            raise ValueError(f"method='dense' does not apply: {reason}. Use method='auto'.")
    mixing = mixing_probe(apply_fn, params, x)
    if mixing is not None:
        raise ValueError(
            f"apply_fn mixes examples: {mixing}, so the batched model has no per-example "
            "gradient (a mean or normalisation over the batch axis, e.g. BatchNorm in training "
            "mode?). Evaluate it in inference mode, or pass method='vmap' to get each example's "
            "values as a batch of one."
        )
    return "dense" if method == "dense" else "engine"


def mixing_probe(apply_fn: ApplyFn, params: Params, x: Array) -> str | None:
    """How output n depends on input m != n, or None: a probe on two examples.

    Float inputs: the forward-mode derivative of output 0 w.r.t. input 1 (and 1 w.r.t. 0) must be
    exactly zero, as it is for any per-example model. Integer inputs (token ids): outputs 0 and 1
    must not move when the other example's ids change. Uses the first two rows of x and the
    given params; inside ``jit`` (tracers) stand-in values of the same shapes.
    """
    with jax.ensure_compile_time_eval():
        if isinstance(x, jax.core.Tracer):
            x = _stand_in_inputs(x)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(params)):
            params = _stand_in_params(params)
        probe = jnp.concatenate([x[:2], x[:1]])[:2]  # two rows, even when N = 1
        fwd = functools.partial(apply_fn, params)
        if jnp.issubdtype(probe.dtype, jnp.inexact):
            for m, n in ((1, 0), (0, 1)):
                tangent = jnp.zeros_like(probe).at[m].set(1.0)
                _, dout = jax.jvp(fwd, (probe,), (tangent,))
                if not bool(jnp.all(dout[n] == 0)):
                    return f"d output[{n}] / d input[{m}] != 0"
            return None
        base = np.asarray(fwd(probe))
        for m, n in ((1, 0), (0, 1)):
            changed = probe.at[m].set(jnp.where(probe[m] > 0, probe[m] - 1, probe[m] + 1))
            if not np.array_equal(np.asarray(fwd(changed))[n], base[n], equal_nan=True):
                return f"output[{n}] changes with the ids of input[{m}]"
        return None


def _stand_in_inputs(x: Array) -> Array:
    shape = (2, *x.shape[1:])
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jax.random.normal(jax.random.key(0), shape, x.dtype)
    return jnp.ones(shape, x.dtype).at[1].set(2)


def _stand_in_params(params: Params) -> Params:
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), max(1, len(leaves)))
    return jax.tree.unflatten(
        treedef,
        [
            0.5 * jax.random.normal(k, leaf.shape, leaf.dtype)
            if jnp.issubdtype(leaf.dtype, jnp.inexact)
            else jnp.zeros(leaf.shape, leaf.dtype)
            for k, leaf in zip(keys, leaves, strict=False)
        ],
    )


def check_chunk(chunk_size) -> None:
    ok = isinstance(chunk_size, int | np.integer) and not isinstance(chunk_size, bool)
    if chunk_size is not None and not (ok and chunk_size > 0):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def check_values(x: Array, params: Params) -> None:
    """Finite x and params (skipped for tracers, whose values are unknown)."""
    if not isinstance(x, jax.core.Tracer) and x.size and jnp.issubdtype(x.dtype, jnp.inexact):
        finite = np.isfinite(np.asarray(x)).reshape(x.shape[0], -1).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(f"x contains NaN or inf in rows {bad[:10].tolist()}")
    check_finite_params(params)


def check_batch(apply_fn: ApplyFn, params: Params, x: Array, lik: likelihoods.Likelihood) -> None:
    """Shapes: a leading batch axis, a model that keeps it, outputs the likelihood can read."""
    if x.ndim < 2:
        raise ValueError(
            f"x must have a leading batch axis, [N, features...]; got shape {tuple(x.shape)}. "
            "For a single input pass x[None]."
        )
    if x.shape[0] == 0:
        raise ValueError("empty batch: x has no rows")
    try:
        out = jax.eval_shape(apply_fn, params, x)
        one = jax.eval_shape(apply_fn, params, x[:1])
    except Exception as err:
        raise ValueError(
            f"apply_fn(params, x) failed for x of shape {tuple(x.shape)}: does the feature count "
            f"match the model? ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err
    if out.shape[:1] != x.shape[:1]:
        raise ValueError(f"apply_fn returned shape {tuple(out.shape)} for {x.shape[0]} inputs")
    if one.shape != (1, *out.shape[1:]):
        raise ValueError(
            f"apply_fn returned shape {tuple(one.shape)} for a batch of one input but "
            f"{tuple(out.shape)} for {x.shape[0]}: the model must keep the batch axis for every N "
            "(a bare .squeeze() drops it at N = 1; squeeze the feature axis: .squeeze(-1))"
        )
    lik.outputs(jnp.zeros(out.shape, out.dtype))  # raises on a shape the likelihood cannot read


def check_finite_params(params: Params) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    concrete = [(p, leaf) for p, leaf in leaves if not isinstance(leaf, jax.core.Tracer)]
    if not concrete:
        return
    if jax.default_backend() == "cpu":  # host memory: numpy reads it in place, no dispatch
        flags = np.array([np.isfinite(np.asarray(leaf)).all() for _, leaf in concrete])
    else:  # one reduction on the device, one transfer of a flag per leaf
        flags = np.asarray(_finite_flags([leaf for _, leaf in concrete]))
    if not flags.all():
        path = concrete[int(np.flatnonzero(~flags)[0])][0]
        raise ValueError(f"params{jax.tree_util.keystr(path)} contains NaN or inf")


@jax.jit
def _finite_flags(leaves: list) -> Array:
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])
