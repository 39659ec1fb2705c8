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
- any other linear use (a broadcast bias add, a LayerNorm/RMSNorm scale, a slice of a position
  table, a leaf used more than once, e.g. the tied embedding/output matrix of an LLM): the
  per-example gradient g = sum_uses op_u^T(delta_u) is materialised and squared. Summing over uses
  keeps the cross-terms: ||sum_u g_u||^2 != sum_u ||g_u||^2.

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
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, Literal

from gnuq.chunking import chunked_map
from gnuq.types import Array, Params

# unary, input-independent linear maps: a view of a parameter stays a view through them
_VIEWS = {
    "transpose", "reshape", "convert_element_type", "squeeze", "expand_dims", "copy", "copy_p",
    "rev", "reduce_precision", "broadcast_in_dim", "slice", "reduce_sum", "neg",
}  # fmt: skip
# of those, the ones that keep every entry exactly once (a bijection: the squared norm of a
# gradient is the same on either side); broadcast_in_dim qualifies when it adds only size-1 axes
_BIJECTIVE = {
    "transpose", "reshape", "convert_element_type", "squeeze", "expand_dims", "copy", "copy_p",
    "rev", "reduce_precision",
}  # fmt: skip
# equations linear in the operand positions listed (None: every position)
_LINEAR_IN = {
    "dot_general": None, "conv_general_dilated": None, "mul": None, "add": None, "sub": None,
    "add_any": None, "concatenate": None, "gather": (0,), "div": (0,), "pad": (0,),
    "dynamic_slice": (0,),
}  # fmt: skip
_INLINE = {
    "jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint", "custom_jvp_call",
    "custom_vjp_call", "custom_vjp_call_jaxpr",
}  # fmt: skip
_ELEMENTWISE = ("add", "sub", "add_any", "mul")
_BUDGET = 2**25  # floats per chunk the default chunk size aims at (128 MiB in float32)


class View(NamedTuple):
    """A jaxpr value that is ``chain(root)``: a linear, input-independent view of a root."""

    root: int
    chain: tuple  # ((primitive, params), ...) applied to the root, in order
    bijective: bool


class Use(NamedTuple):
    """One equation linear in a view of a root; its output gets tap ``tap``."""

    tap: int
    root: int
    prim: Any
    params: dict
    pos: int  # which operand is the view
    operands: tuple  # per operand: ("act", k) recorded activation k, ("lit", value), ("view",)
    avals: tuple  # ShapeDtypeStruct of every operand
    chain: tuple
    bijective: bool
    root_aval: Any
    out_aval: Any


@dataclass
class Plan:
    """What the analysis found: roots (leaves and their per-iteration scan slices), uses, and
    which leaves the engine serves."""

    roots: dict = field(default_factory=dict)  # id -> (parent id | None, stack, aval)
    uses: dict = field(default_factory=dict)  # tap id -> Use
    bad: set = field(default_factory=set)  # root ids with a use the engine cannot serve
    scanned: dict = field(default_factory=dict)  # root id -> times passed as scan xs
    scan_taps: dict = field(default_factory=dict)  # scan number -> (first tap, end tap)
    stacks: dict = field(default_factory=dict)  # tap id -> enclosing scan lengths
    scan_children: dict = field(default_factory=dict)  # (scan number, operand) -> root id

    def children(self, root: int) -> list[int]:
        return [r for r, (parent, _, _) in self.roots.items() if parent == root]

    def served(self, root: int) -> bool:
        """Whether every use of ``root`` (directly or through scan slices) is served."""
        if root in self.bad:
            return False
        direct = any(u.root == root for u in self.uses.values())
        n_scan = self.scanned.get(root, 0)
        if n_scan > 1 or (n_scan and direct):
            return False
        return all(self.served(c) for c in self.children(root))

    def descendants(self, root: int) -> list[int]:
        return [root] + [d for c in self.children(root) for d in self.descendants(c)]


class _Ctx:
    """Traversal state shared by the analysis (``analysing``) and the tapped evaluation."""

    def __init__(self, plan: Plan, taps: dict | None, analysing: bool):
        self.plan, self.taps, self.analysing = plan, taps, analysing
        self.n_taps = self.n_scans = 0
        self.next_root = max(plan.roots) + 1 if plan.roots else 0
        self.acts: dict = {}  # tap id -> list of recorded operand values
        self.stack: tuple = ()  # lengths of the enclosing scans

    def bad(self, info: View | None) -> None:
        if info is not None and self.analysing:
            self.plan.bad.add(info.root)


def _aval(x) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))


def _eval(jaxpr, consts, args, infos, ctx: _Ctx) -> tuple[list, list]:
    """Evaluate ``jaxpr`` on ``args``; ``infos[i]`` is a View when arg i is one.

    Adds ``ctx.taps[id]`` to the output of every linear use and records its activations in
    ``ctx.acts[id]``; the analysis records the uses in ``ctx.plan``. Returns the outputs and
    their View infos.
    """
    env: dict = {}
    info: dict = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts, strict=True):
        env[v] = val
    for v, val, i in zip(jaxpr.invars, args, infos, strict=True):
        env[v], info[v] = val, i

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        ins = [None if isinstance(v, Literal) else info.get(v) for v in eqn.invars]
        views = [k for k, i in enumerate(ins) if i is not None]
        name = eqn.primitive.name
        outinfo = [None] * len(eqn.outvars)
        if not views:
            outs = _bind(eqn, invals)
        elif name in _INLINE:  # a call: evaluate its body here, so that its uses get taps
            sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            inner, consts_ = (sub.jaxpr, sub.consts) if isinstance(sub, ClosedJaxpr) else (sub, [])
            outs, outinfo = _eval(inner, consts_, invals, ins, ctx)
        elif name == "scan":
            outs = _scan(eqn, invals, ins, ctx)
        elif name in _VIEWS and len(eqn.invars) == 1:
            outs = _bind(eqn, invals)
            i = ins[0]
            same_size = math.prod(np.shape(outs[0])) == math.prod(np.shape(invals[0]))
            bij = i.bijective and (name in _BIJECTIVE or (name == "broadcast_in_dim" and same_size))
            outinfo = [View(i.root, (*i.chain, (eqn.primitive, dict(eqn.params))), bij)]
        elif name in _LINEAR_IN and len(views) == 1 and _linear_at(name, views[0]):
            outs = _linear_use(eqn, invals, ins, views[0], ctx)
        else:  # a use the engine cannot serve: those leaves go to vmap(jacrev)
            for i in ins:
                ctx.bad(i)
            outs = _bind(eqn, invals)
        for v, val, i in zip(eqn.outvars, outs, outinfo, strict=True):
            env[v], info[v] = val, i
    outvals = [read(v) for v in jaxpr.outvars]
    return outvals, [None if isinstance(v, Literal) else info.get(v) for v in jaxpr.outvars]


def _bind(eqn, invals) -> list:
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def _linear_at(name: str, pos: int) -> bool:
    allowed = _LINEAR_IN[name]
    return allowed is None or pos in allowed


def _operand_kinds(eqn, pos: int) -> tuple:
    """Per operand: ("view",), ("lit", value), ("zero",) where its value does not enter the
    transpose (sums and concatenations), or ("act", k): the k-th recorded activation."""
    kinds, k = [], 0
    for j, v in enumerate(eqn.invars):
        if j == pos:
            kinds.append(("view",))
        elif isinstance(v, Literal):
            kinds.append(("lit", v.val))
        elif eqn.primitive.name in ("add", "sub", "add_any", "concatenate", "pad"):
            kinds.append(("zero",))
        else:
            kinds.append(("act", k))
            k += 1
    return tuple(kinds)


def _linear_use(eqn, invals, ins, pos: int, ctx: _Ctx) -> list:
    """A tapped linear use: record the activations, add the tap to the output."""
    (out,) = _bind(eqn, invals)
    tap = ctx.n_taps
    ctx.n_taps += 1
    kinds = _operand_kinds(eqn, pos)
    if ctx.analysing:
        view = ins[pos]
        ctx.plan.uses[tap] = Use(
            tap, view.root, eqn.primitive, dict(eqn.params), pos, kinds,
            tuple(_aval(a) for a in invals), view.chain, view.bijective,
            ctx.plan.roots[view.root][2], _aval(out),
        )  # fmt: skip
        ctx.plan.stacks[tap] = ctx.stack
    if ctx.taps is not None and tap in ctx.taps:
        ctx.acts[tap] = [a for a, kind in zip(invals, kinds, strict=True) if kind[0] == "act"]
        out = out + ctx.taps[tap]
    return [out]


def _scan(eqn, invals, ins, ctx: _Ctx) -> list:
    """``lax.scan`` over views of parameters: each iteration's slice is a root of its own
    (disjoint entries of the leaf); taps go in, and activations come out, as scanned arrays."""
    p = eqn.params
    nc, nk = p["num_consts"], p["num_carry"]
    body: ClosedJaxpr = p["jaxpr"]
    scan_no = ctx.n_scans
    ctx.n_scans += 1
    body_infos = []
    for k, i in enumerate(ins):
        if i is not None and k >= nc + nk and i.bijective:  # sliced along its leading axis
            if ctx.analysing:
                child = ctx.next_root
                ctx.next_root += 1
                ctx.plan.scanned[i.root] = ctx.plan.scanned.get(i.root, 0) + 1
                sliced = _aval(invals[k])
                aval = jax.ShapeDtypeStruct(sliced.shape[1:], sliced.dtype)
                ctx.plan.roots[child] = (i.root, (*ctx.stack, p["length"]), aval)
                ctx.plan.scan_children[(scan_no, k)] = child
            body_infos.append(View(ctx.plan.scan_children[(scan_no, k)], (), True))
        else:  # a constant or a carry holds the same entries in every iteration
            ctx.bad(i)
            body_infos.append(None)
    consts, init, xs = invals[:nc], invals[nc : nc + nk], invals[nc + nk :]
    first = ctx.n_taps
    if ctx.taps is None:
        inner_taps = {}
    else:
        end = ctx.plan.scan_taps[scan_no][1]
        inner_taps = {t: ctx.taps[t] for t in range(first, end) if t in ctx.taps}
    saved_scans, saved_stack = ctx.n_scans, ctx.stack
    after = {}

    def step(carry, sliced):
        x_slice, tap_slice = sliced
        ctx.n_taps, ctx.n_scans = first, saved_scans  # a retrace must number things the same
        ctx.stack = (*saved_stack, p["length"])
        outer_taps, outer_acts = ctx.taps, ctx.acts
        ctx.taps = None if outer_taps is None else tap_slice
        ctx.acts = {}
        outs, _ = _eval(body.jaxpr, body.consts, [*consts, *carry, *x_slice], body_infos, ctx)
        acts = ctx.acts
        ctx.taps, ctx.acts = outer_taps, outer_acts
        after["taps"], after["scans"] = ctx.n_taps, ctx.n_scans
        return outs[:nk], (outs[nk:], acts)

    carry, (ys, acts) = lax.scan(
        step, list(init), (list(xs), inner_taps), length=p["length"], reverse=p["reverse"],
        unroll=p["unroll"],
    )  # fmt: skip
    ctx.n_taps, ctx.n_scans, ctx.stack = after["taps"], after["scans"], saved_stack
    if ctx.analysing:
        ctx.plan.scan_taps[scan_no] = (first, ctx.n_taps)
    ctx.acts.update(acts)
    return [*carry, *ys]


# ---------------------------------------------------------------------------------------------
# analysis


class Analysis(NamedTuple):
    plan: Plan
    jaxpr: ClosedJaxpr
    served: tuple[bool, ...]  # per parameter leaf: served by the engine (else vmap(jacrev))


def analyse(f: Callable, params: Params, example) -> Analysis:
    """Trace ``f(params, example) -> [K]`` for ONE example and find every leaf's linear uses.

    ``example`` may hold ``jax.ShapeDtypeStruct``s. No FLOPs are spent.
    """
    leaves, treedef = jax.tree.flatten(params)
    ex_leaves, ex_def = jax.tree.flatten(example)

    def flat_f(leaves_, ex_leaves_):
        return f(jax.tree.unflatten(treedef, leaves_), jax.tree.unflatten(ex_def, ex_leaves_))

    leaf_avals = [_aval(leaf) for leaf in leaves]
    closed = jax.make_jaxpr(flat_f)(leaf_avals, [_aval(e) for e in ex_leaves])
    plan = Plan()
    for i, a in enumerate(leaf_avals):
        plan.roots[i] = (None, (), a)
    ctx = _Ctx(plan, None, analysing=True)
    infos = [View(i, (), True) for i in range(len(leaves))] + [None] * len(ex_leaves)

    def run(*args):
        outs, out_infos = _eval(closed.jaxpr, closed.consts, list(args), infos, ctx)
        for i in out_infos:  # a parameter returned as (part of) the output
            ctx.bad(i)
        return outs

    jax.eval_shape(run, *leaf_avals, *[_aval(e) for e in ex_leaves])
    served = tuple(plan.served(i) for i in range(len(leaves)))
    return Analysis(plan, closed, served)


# ---------------------------------------------------------------------------------------------
# squared norms of one use / one root, for ONE example (and one scan iteration)

_HIGHEST = lax.Precision.HIGHEST


def _scaled_sq(core: Array, scale: Array) -> Array:
    """``scale^2 core`` written as ``(scale sqrt(core))^2``, so that a huge scale times a zero
    core stays 0 (the scaled pass; the first pass has scale 1)."""
    return (scale * jnp.sqrt(jnp.maximum(core, 0.0))) ** 2


def _max_abs(a: Array, axes, scaled: bool) -> Array:
    """max |a| over ``axes`` (1 where 0), or 1 when not ``scaled``."""
    if not scaled:
        return jnp.ones([n for ax, n in enumerate(a.shape) if axes is not None and ax not in axes])
    m = jnp.max(jnp.abs(a), axis=axes)
    return jnp.where(m > 0, m, 1.0).astype(a.dtype)


def _outer_sq(A: Array, D: Array, scaled: bool = False) -> Array:
    """``[K]`` squared norms of g_k = sum_{b,t} A_bt D_kbt^T (``A [B, T, I]``, ``D [K, B, T, J]``):
    the outer product for T = 1, else the Gram form or the materialised g, whichever is cheaper."""
    k, _, t, j = D.shape
    i = A.shape[2]
    sa = _max_abs(A, None, scaled)
    sd = _max_abs(D, (1, 2, 3), scaled)
    A = A / sa
    D = D / sd[:, None, None, None]
    if t == 1:
        # reductions, not a dot (under vmap a dot becomes n tiny batched matmuls), and none
        # over an axis of size 1 (XLA's CPU reductions over them are slow under vmap)
        a2 = jnp.sum(A[:, 0] ** 2, axis=-1)  # [B]
        d2 = jnp.sum(D[:, :, 0] ** 2, axis=-1)  # [K, B]
        core = d2[:, 0] * a2[0] if A.shape[0] == 1 else jnp.sum(d2 * a2, axis=1)
    elif t * t * (i + k * j) <= k * t * i * j:
        ga = jnp.einsum("bti,bsi->bts", A, A, precision=_HIGHEST)
        gd = jnp.einsum("kbtj,kbsj->kbts", D, D, precision=_HIGHEST)
        core = jnp.einsum("bts,kbts->k", ga, gd, precision=_HIGHEST)
    else:
        g = jnp.einsum("bti,kbtj->kbij", A, D, precision=_HIGHEST)
        core = jnp.sum(g**2, axis=(1, 2, 3))
    return _scaled_sq(core, sa * sd)


def _dot_general_sq(use: Use, a: Array, d: Array, scaled: bool) -> Array:
    """``dot_general`` with the parameter at ``use.pos`` and the activation ``a`` opposite."""
    (lc, rc), (lb, rb) = use.params["dimension_numbers"]
    ac, ab = (lc, lb) if use.pos == 1 else (rc, rb)
    af = [ax for ax in range(a.ndim) if ax not in ac and ax not in ab]
    size = lambda axes: math.prod(a.shape[ax] for ax in axes)  # noqa: E731
    B, T, I = size(ab), size(af), size(ac)  # the docstring's names
    A = jnp.transpose(a, (*ab, *af, *ac)).reshape(B, T, I)
    if use.pos == 0:  # output [batch, parameter free, activation free]: activation free first
        nb, nw = len(lb), use.avals[0].ndim - len(lb) - len(lc)
        order = (*range(nb), *range(nb + nw, d.ndim - 1), *range(nb, nb + nw))
        d = jnp.transpose(d, (0, *(1 + o for o in order)))
    return _outer_sq(A, d.reshape(d.shape[0], B, T, -1), scaled)


def _conv_sq(use: Use, a: Array, d: Array, scaled: bool) -> Array:
    """A convolution's kernel: image patches of ``a`` are the activation of a ``dot_general``."""
    p = use.params
    dn = p["dimension_numbers"]
    patches = lax.conv_general_dilated_patches(
        a, [use.avals[1].shape[s] for s in dn.rhs_spec[2:]], p["window_strides"], p["padding"],
        p["lhs_dilation"], p["rhs_dilation"], dn, precision=_HIGHEST,
    )  # fmt: skip
    feature = dn.out_spec[1]
    A = jnp.moveaxis(patches, feature, -1)
    D = jnp.moveaxis(d, 1 + feature, -1)
    A, D = A.reshape(1, -1, A.shape[-1]), D.reshape(D.shape[0], 1, -1, D.shape[-1])
    return _outer_sq(A, D, scaled)


def _conv_fast(use: Use) -> bool:
    p = use.params
    spatial = p["dimension_numbers"].rhs_spec[2:]
    return (
        use.pos == 1
        and p["feature_group_count"] == 1
        and p["batch_group_count"] == 1
        and list(spatial) == sorted(spatial)
    )


def _gather_fast(use: Use) -> bool:
    """An embedding lookup ``W[ids]`` of rows of a ``[V, d]`` view."""
    dn, (w, idx) = use.params["dimension_numbers"], use.avals
    return (
        use.pos == 0
        and len(w.shape) == 2
        and idx.shape[-1:] == (1,)
        and tuple(dn.offset_dims) == (len(idx.shape) - 1,)
        and tuple(dn.collapsed_slice_dims) == (0,)
        and tuple(dn.start_index_map) == (0,)
        and not dn.operand_batching_dims
        and tuple(use.params["slice_sizes"]) == (1, w.shape[1])
    )


def _gather_sq(use: Use, idx: Array, d: Array, scaled: bool) -> Array:
    """``sum_{t,s} [id_t = id_s] (delta_t . delta_s)`` (Gram) or the scattered rows."""
    v, width = use.avals[0].shape
    ids = idx.reshape(-1)
    D = d.reshape(d.shape[0], -1, width)
    if use.params["mode"] == lax.GatherScatterMode.FILL_OR_DROP:  # out of range: no gradient
        D = D * ((ids >= 0) & (ids < v)).astype(D.dtype)[None, :, None]
    ids = jnp.clip(ids, 0, v - 1)
    t = ids.shape[0]
    sd = _max_abs(D, (1, 2), scaled)
    D = D / sd[:, None, None]
    if t * t * (width + 1) <= v * width:
        same = (ids[:, None] == ids[None, :]).astype(D.dtype)
        core = jnp.einsum("ts,kts->k", same, jnp.einsum("ktj,ksj->kts", D, D, precision=_HIGHEST))
    else:
        g = jax.vmap(lambda dk: jnp.zeros((v, width), D.dtype).at[ids].add(dk))(D)
        core = jnp.sum(g**2, axis=(1, 2))
    return _scaled_sq(core, sd)


def _broadcast_tail(use: Use) -> tuple[int, ...] | None:
    """The view's axes summed by the transpose of its chain when the chain is bijective up to
    one final replicating ``broadcast_in_dim`` (a bias or norm scale over T positions), or None
    when the chain is anything else."""
    shapes = [use.root_aval.shape]
    for prim, params in use.chain:
        shape = jax.eval_shape(lambda r, p=prim, q=params: p.bind(r, **q), _zeros_aval(shapes[-1]))
        shapes.append(shape.shape)
    *prefix, last = use.chain if use.chain else [(None, None)]
    if any(p.name not in _BIJECTIVE and math.prod(a) != math.prod(b)
           for (p, _), a, b in zip(prefix, shapes, shapes[1:], strict=False)):  # fmt: skip
        return None
    if last[0] is None or last[0].name != "broadcast_in_dim":
        return () if use.bijective else None
    dims, src_shape, out_shape = last[1]["broadcast_dimensions"], shapes[-2], shapes[-1]
    new = [ax for ax in range(len(out_shape)) if ax not in dims]
    stretched = [ax for s, ax in zip(src_shape, dims, strict=True) if s == 1 and out_shape[ax] != 1]
    return tuple(sorted(ax for ax in new + stretched if out_shape[ax] != 1))  # size 1: no sum


def _same_rank(use: Use) -> bool:
    return len(use.avals[use.pos].shape) == len(use.out_aval.shape)


def _zeros_aval(shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _elementwise_sq(use: Use, acts: list, d: Array, axes: tuple, scaled: bool) -> Array:
    """A bias add (g = delta) or a scale (g = a * delta), summed over the broadcast axes."""
    if use.prim.name == "mul":
        (other,) = [k for j, k in enumerate(use.operands) if j != use.pos]
        d = d * (acts[0] if other[0] == "act" else other[1])
    view = use.avals[use.pos].shape  # the op itself may broadcast size-1 axes of the view
    stretched = [1 + ax for ax, (v, o) in enumerate(zip(view, d.shape[1:], strict=True)) if v != o]
    d = jnp.sum(d, axis=tuple(stretched), keepdims=True) if stretched else d
    g = jnp.sum(d, axis=tuple(1 + ax for ax in axes)) if axes else d
    g = g.reshape(g.shape[0], -1)
    s = _max_abs(g, (1,), scaled)
    return _scaled_sq(jnp.sum((g / s[:, None]) ** 2, axis=1), s)


def _fast_sq(use: Use, acts: list, d: Array, scaled: bool) -> Array | None:
    """``[K]`` squared norms of a single-use root through a linear form, or None."""
    name = use.prim.name
    if name in _ELEMENTWISE:
        axes = _broadcast_tail(use) if _same_rank(use) else None
        return None if axes is None else _elementwise_sq(use, acts, d, axes, scaled)
    if not use.bijective:
        return None
    if name == "dot_general":
        return _dot_general_sq(use, acts[0], d, scaled)
    if name == "conv_general_dilated" and _conv_fast(use):
        return _conv_sq(use, acts[0], d, scaled)
    if name == "gather" and _gather_fast(use):
        return _gather_sq(use, acts[0], d, scaled)
    return None


def _use_grad(use: Use, acts: list, delta: Array) -> Array:
    """Example's gradient w.r.t. the root from one use: chain^T(op^T(delta)), materialised."""

    def op(w: Array) -> Array:
        operands = []
        for kind, aval in zip(use.operands, use.avals, strict=True):
            if kind[0] == "view":
                operands.append(w)
            elif kind[0] == "lit":
                operands.append(kind[1])
            elif kind[0] == "zero":
                operands.append(jnp.zeros(aval.shape, aval.dtype))
            else:
                operands.append(acts[kind[1]])
        return use.prim.bind(*operands, **use.params)

    def chain(r: Array) -> Array:
        for prim, params in use.chain:
            r = prim.bind(r, **params)
        return r

    view = use.avals[use.pos]
    _, op_t = jax.vjp(op, jnp.zeros(view.shape, view.dtype))
    _, chain_t = jax.vjp(chain, jnp.zeros(use.root_aval.shape, use.root_aval.dtype))
    return chain_t(op_t(delta)[0])[0]


def _root_sq(uses: list[Use], acts: dict, deltas: dict, scaled: bool) -> Array:
    """``[K]`` squared norm of one root's gradient for one example and scan iteration:
    acts[tap] its activations, deltas[tap] ``[K, *out]``."""
    if len(uses) == 1:
        fast = _fast_sq(uses[0], acts[uses[0].tap], deltas[uses[0].tap], scaled)
        if fast is not None:
            return fast

    def one(ds: dict) -> Array:
        g = sum(_use_grad(u, acts[u.tap], ds[u.tap]) for u in uses)
        s = _max_abs(g, None, scaled)
        return _scaled_sq(jnp.sum((g / s) ** 2), s)

    return jax.vmap(one)(deltas)


def _stacked_root_sq(uses: list[Use], acts: dict, deltas: dict, depth: int, scaled: bool) -> Array:
    """``_root_sq`` summed over ``depth`` leading scan axes (acts: axis 0, deltas: axis 1)."""
    if depth == 0:
        return _root_sq(uses, acts, deltas, scaled)
    per = jax.vmap(
        lambda a, d: _stacked_root_sq(uses, a, d, depth - 1, scaled), in_axes=(0, 1), out_axes=0
    )(acts, deltas)
    return jnp.sum(per, axis=0)


# ---------------------------------------------------------------------------------------------
# the estimator


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
        if not _fast_sq_static(use):
            per += reps * k * math.prod(use.root_aval.shape)
    return int(np.clip(_BUDGET // per, 1, 2048))


def _fast_sq_static(use: Use) -> bool:
    name = use.prim.name
    if name in _ELEMENTWISE:
        return _same_rank(use) and _broadcast_tail(use) is not None
    return use.bijective and (
        name == "dot_general"
        or (name == "conv_general_dilated" and _conv_fast(use))
        or (name == "gather" and _gather_fast(use))
    )


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
        ctx = _Ctx(plan, taps, analysing=False)
        outs, _ = _eval(closed.jaxpr, closed.consts, [*leaves, *ex], infos, ctx)
        return outs[0], ctx.acts

    taps = {
        u.tap: jnp.zeros((n, *plan.stacks[u.tap], *u.out_aval.shape), u.out_aval.dtype)
        for u in live
    }
    pred, vjp_fn, acts = jax.vjp(lambda t: jax.vmap(tapped)(ex_leaves, t), taps, has_aux=True)
    basis = jnp.broadcast_to(jnp.eye(k, dtype=pred.dtype)[:, None, :], (k, n, k))
    (deltas,) = jax.vmap(vjp_fn)(basis)  # tap -> [K, n, *stack, *out]

    def combine(scaled: bool) -> Array:
        total = jnp.zeros((n, k), pred.dtype)
        for r in roots:
            if not uses[r]:
                continue
            depth = len(plan.roots[r][1])
            a = {u.tap: acts[u.tap] for u in uses[r]}
            d = {u.tap: deltas[u.tap] for u in uses[r]}
            per = functools.partial(_stacked_root_sq, uses[r], depth=depth, scaled=scaled)
            total = total + jax.vmap(per, in_axes=(0, 1))(a, d)
        return total

    # activations beyond ~1e19 overflow float32 when squared although the gradient norm may be
    # finite (tanh saturates: 0): only then recompute with every factor scaled by its max |.|
    total = combine(scaled=False)
    return lax.cond(jnp.all(jnp.isfinite(total)), lambda: total, lambda: combine(scaled=True)), pred


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
