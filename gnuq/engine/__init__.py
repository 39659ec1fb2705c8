"""Per-example squared gradient norms read from the computation, not from layer classes.

For a per-example function ``f(params, example) -> [K]`` (``gnuq.estimators`` builds it from any
``apply(params, x)``), the engine traces ``f`` to a jaxpr and finds every *linear use* of a
parameter leaf: an equation that is linear in an operand that is the leaf itself or a linear,
input-independent view of it (transpose, reshape, dtype cast, broadcast, slice, ...). For such a
use with output z = op(..., W, ...), example n's gradient w.r.t. W is op's transpose applied to
delta_n = d f_k / d z, with the other operands held at their values. A zero "tap" added to every
such output gives all delta_n from ONE batched backward pass per output k (example n's output
depends only on its own taps), and each use's squared norm follows from its other operand a and
delta without forming a per-example gradient where a linear form exists:

- ``dot_general`` (Dense, DenseGeneral, einsum, ``x @ W``, attention projections) and
  ``conv_general_dilated`` (through image patches): with a as ``[B, T, I]`` (T positions of one
  example, e.g. tokens or patches) and delta as ``[B, T, J]``, the gradient is
  g_b = sum_t a_bt delta_bt^T and
      ||g||^2 = sum_b ||a_b||^2 ||delta_b||^2                    (T = 1, the outer product)
              = sum_b sum_{t,s} (a_bt . a_bs)(delta_bt . delta_bs)  (Gram: T^2 (I + J) FLOPs)
              or the materialised g (T I J FLOPs), whichever is cheaper;
- an embedding ``gather`` of rows ``ids``: ||g||^2 = sum_{t,s} [id_t = id_s] (delta_t . delta_s)
  (Gram) or the scattered rows, whichever is cheaper;
- a 2-D leaf used more than once through these forms (the tied embedding/output matrix of an
  LLM: gathered rows and the output projection): each use's gradient is sum_p L_p R_p^T (L one-hot
  rows or an activation, R a delta, or the other way round), and the cross terms stay:
      ||sum_u g_u||^2 = sum_{u,v} sum_{p,q} (L_up . L_vq)(R_up . R_vq)
  (T^2 (d_in + d_out) FLOPs per pair of uses instead of T d_in d_out), or the materialised g,
  whichever is cheaper;
- any other linear use (a broadcast bias add, a LayerNorm/RMSNorm scale, a slice of a position
  table, a leaf used more than once otherwise): the per-example gradient
  g = sum_uses op_u^T(delta_u) is materialised and squared (the sum keeps the cross terms).

A leaf scanned over by ``lax.scan`` (stacked layers) is sliced disjointly per iteration, so its
squared norm is the sum over iterations of each slice's. Every leaf the engine cannot prove it
handles (used non-linearly, inside ``while``/``cond``, as a scan carry or scan constant, two
parameters in one equation) falls back to ``vmap(jacrev)`` for that leaf only.

Examples are evaluated one at a time under ``vmap`` (a batch of one, exactly like the ``vmap``
path), so the engine and ``vmap(jacrev)`` compute the same quantity for any model; whether that
equals the batched model's per-example gradient (no mixing of examples) is checked by the caller.
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gnuq.chunking import chunked_map
from gnuq.engine.norms import fast_static, stacked_root_sq
from gnuq.engine.squeeze import squeezed
from gnuq.engine.trace import Analysis, Ctx, View, analyse, evaluate
from gnuq.types import Array, Params

_BUDGET = 2**25  # floats per chunk the default chunk size aims at (128 MiB in float32)


def default_chunk(analysis: Analysis, k: int) -> int:
    """Examples per chunk so that one chunk's taps, activations and materialised gradients stay
    near ``_BUDGET`` floats."""
    plan = analysis.plan
    per = 1
    for tap, use in plan.uses.items():
        reps = math.prod(plan.stacks[tap])
        per += reps * (k + 1) * math.prod(use.out_aval.shape)
        recorded = [a for a, kind in zip(use.avals, use.operands, strict=True) if kind[0] == "act"]
        per += reps * sum(math.prod(a.shape) for a in recorded)
        if not fast_static(use):
            per += reps * k * math.prod(use.root_aval.shape)
    return int(np.clip(_BUDGET // per, 1, 2048))


def squared_norms(
    f: Callable, params: Params, examples, chunk: int | None = None, fallback_chunk: int = 16
) -> Array:
    """``[N, K]`` squared norms ||grad_theta f(theta, example_n)_k||^2 over ALL parameters.

    ``f(params, example) -> [K]`` for one example; ``examples`` a pytree with leading axis N.
    Leaves the engine serves take the linear forms above (``chunk`` examples at a time, default
    from the memory estimate); the others take ``vmap(jacrev)``, ``fallback_chunk`` at a time.
    """
    return squared_norms_and_outputs(f, params, examples, chunk, fallback_chunk)[0]


def squared_norms_and_outputs(
    f: Callable, params: Params, examples, chunk: int | None = None, fallback_chunk: int = 16
) -> tuple[Array, Array]:
    """``squared_norms`` and the outputs ``f(params, example_n)`` ``[N, K]`` of the same pass."""
    leaves, treedef = jax.tree.flatten(params)
    one = jax.tree.map(lambda e: jax.ShapeDtypeStruct(e.shape[1:], e.dtype), examples)
    analysis = analyse(f, params, one)
    k = jax.eval_shape(f, params, one).shape[0]
    served = [i for i, s in enumerate(analysis.served) if s]
    others = [i for i, s in enumerate(analysis.served) if not s]
    chunk = chunk or default_chunk(analysis, k)
    per_chunk = functools.partial(_engine_chunk, analysis, leaves, served=served, k=k)
    total, outputs = chunked_map(per_chunk, examples, chunk)
    if others:
        total = total + _fallback(f, leaves, treedef, examples, others, fallback_chunk)
    return total, outputs


def _engine_chunk(
    analysis: Analysis, leaves: list, examples, *, served: list[int], k: int
) -> Array:
    """``[n, K]`` squared norms of the served leaves and ``[n, K]`` outputs for one chunk."""
    plan, closed = analysis.plan, analysis.jaxpr
    roots = [r for leaf in served for r in plan.descendants(leaf)]
    uses = {r: [u for u in plan.uses.values() if u.root == r] for r in roots}
    live = [u for r in roots for u in uses[r]]
    n = jax.tree.leaves(examples)[0].shape[0]
    ex_leaves = jax.tree.leaves(examples)
    n_leaves = len(leaves)
    infos = [View(i, (), True) for i in range(n_leaves)] + [None] * len(ex_leaves)

    def tapped(ex: list, taps: dict) -> tuple[Array, dict]:
        ctx = Ctx(plan, taps, analysing=False)
        outs, _ = evaluate(closed.jaxpr, closed.consts, [*leaves, *ex], infos, ctx)
        return outs[0], ctx.acts

    def passes(scaled: bool) -> tuple[Array, Array]:
        taps = {
            u.tap: jnp.zeros((n, *plan.stacks[u.tap], *u.out_aval.shape), u.out_aval.dtype)
            for u in live
        }
        pred, vjp_fn, acts = jax.vjp(lambda t: jax.vmap(tapped)(ex_leaves, t), taps, has_aux=True)
        basis = jnp.broadcast_to(jnp.eye(k, dtype=pred.dtype)[:, None, :], (k, n, k))
        (deltas,) = jax.vmap(vjp_fn)(basis)  # tap -> [K, n, *stack, *out]
        total = jnp.zeros((k, n), pred.dtype)
        for r in roots:
            if not uses[r]:
                continue
            depth = len(plan.roots[r][1])
            a = {u.tap: acts[u.tap] for u in uses[r]}
            d = {u.tap: deltas[u.tap] for u in uses[r]}
            per = functools.partial(stacked_root_sq, uses[r], depth=depth, scaled=scaled, k=k)

            def one(a_n, d_nk, per=per):
                return per(a_n, jax.tree.map(lambda x: x[None], d_nk))[0]

            # outputs outermost: the deltas stay [K, n, ...] as the backward pass wrote them
            # (vmap over n at axis 1 would transpose every delta), and what does not depend on
            # the output (a Gram matrix of activations) is still computed once per example
            total = total + jax.vmap(jax.vmap(squeezed(one)), in_axes=(None, 0))(a, d)
        return total.T, pred

    # activations beyond ~1e19 overflow float32 when squared although the gradient norm may be
    # finite (tanh saturates: 0): only then recompute with every factor scaled by its max |.|.
    # The recomputation repeats the passes, so that the branch takes only the examples: a branch
    # taking the deltas made XLA copy them all, which cost twice the passes themselves
    total, pred = passes(scaled=False)
    return lax.cond(
        jnp.all(jnp.isfinite(total)), lambda: (total, pred), lambda: passes(scaled=True)
    )


def _fallback(f: Callable, leaves: list, treedef, examples, others: list[int], chunk: int):
    """``[N, K]`` squared norms over the leaves ``others`` by ``vmap(jacrev)``."""

    def restricted(sub: list, ex) -> Array:
        full = list(leaves)
        for i, leaf in zip(others, sub, strict=True):
            full[i] = leaf
        return f(jax.tree.unflatten(treedef, full), ex)

    sub = [leaves[i] for i in others]

    def one(ex) -> Array:
        jac = jax.jacrev(restricted)(sub, ex)
        return sum(jnp.sum(j.reshape(j.shape[0], -1) ** 2, axis=1) for j in jac)

    return chunked_map(jax.vmap(one), examples, chunk)
