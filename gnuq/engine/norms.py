"""Squared norms of one linear use's per-example gradient from its operand and its delta, in
the linear forms of ``gnuq.engine``'s docstring (outer product, Gram, scattered rows), or
materialised where no form applies."""

import math

import jax
import jax.numpy as jnp
from jax import lax

from gnuq.engine.trace import BIJECTIVE, ELEMENTWISE, Use
from gnuq.types import Array

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


def outer_sq(A: Array, D: Array, scaled: bool = False, k: int | None = None) -> Array:
    """``[K]`` squared norms of g_k = sum_{b,t} A_bt D_kbt^T (``A [B, T, I]``, ``D [K, B, T, J]``):
    the outer product for T = 1, else the Gram form or the materialised g, whichever is cheaper
    for ``k`` outputs (default K; more where the caller vmaps over outputs)."""
    _, _, t, j = D.shape
    k = k or D.shape[0]
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


def _dot_factors(use: Use, a: Array, d: Array) -> tuple[Array, Array]:
    """``A [B, T, I]`` and ``D [K, B, T, J]`` of a ``dot_general`` with the parameter at
    ``use.pos`` and the activation ``a`` opposite: the view's gradient is sum_t A_bt D_kbt^T
    (I: the view's contracting axes, J: its free axes)."""
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
    return A, d.reshape(d.shape[0], B, T, -1)


def _dot_general_sq(use: Use, a: Array, d: Array, scaled: bool, k: int) -> Array:
    return outer_sq(*_dot_factors(use, a, d), scaled, k)


def _conv_sq(use: Use, a: Array, d: Array, scaled: bool, k: int) -> Array:
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
    return outer_sq(A, D, scaled, k)


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


def _gather_rows(use: Use, idx: Array, d: Array) -> tuple[Array, Array]:
    """``ids [T]`` and ``D [K, T, width]``: the gradient's row ids_t receives D_kt."""
    v, width = use.avals[0].shape
    ids = idx.reshape(-1)
    D = d.reshape(d.shape[0], -1, width)
    if use.params["mode"] == lax.GatherScatterMode.FILL_OR_DROP:  # out of range: no gradient
        D = D * ((ids >= 0) & (ids < v)).astype(D.dtype)[None, :, None]
    return jnp.clip(ids, 0, v - 1), D


def _gather_sq(use: Use, idx: Array, d: Array, scaled: bool) -> Array:
    """``sum_{t,s} [id_t = id_s] (delta_t . delta_s)`` (Gram) or the scattered rows."""
    v, width = use.avals[0].shape
    ids, D = _gather_rows(use, idx, d)
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
    if any(p.name not in BIJECTIVE and math.prod(a) != math.prod(b)
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


def _fast_sq(use: Use, acts: list, d: Array, scaled: bool, k: int) -> Array | None:
    """``[K]`` squared norms of a single-use root through a linear form, or None."""
    name = use.prim.name
    if name in ELEMENTWISE:
        axes = _broadcast_tail(use) if _same_rank(use) else None
        return None if axes is None else _elementwise_sq(use, acts, d, axes, scaled)
    if not use.bijective:
        return None
    if name == "dot_general":
        return _dot_general_sq(use, acts[0], d, scaled, k)
    if name == "conv_general_dilated" and _conv_fast(use):
        return _conv_sq(use, acts[0], d, scaled, k)
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


# chain links through which a 2-D root's gradient is the view's, element for element
_SAME = {"convert_element_type", "copy", "copy_p", "reduce_precision"}


def _factors(use: Use, acts: list, d: Array) -> tuple | None:
    """The use's gradient in the root's orientation as sum_p L_p R_p^T: ``(L, R)``, each
    ``[K or 1, P, dim]`` or ``ids [P]`` (one-hot rows of a gather); None where no such form."""
    if not use.bijective or len(use.root_aval.shape) != 2:
        return None
    flipped = False
    for prim, params in use.chain:
        if prim.name == "transpose" and tuple(params["permutation"]) == (1, 0):
            flipped = not flipped
        elif prim.name not in _SAME:
            return None
    if use.prim.name == "gather" and _gather_fast(use):
        pair = _gather_rows(use, acts[0], d)
    elif use.prim.name == "dot_general" and len(use.avals[use.pos].shape) == 2:
        (lc, rc), (lb, rb) = use.params["dimension_numbers"]
        vc, vb = (rc, rb) if use.pos == 1 else (lc, lb)
        if vb or len(vc) != 1:
            return None
        A, D = _dot_factors(use, acts[0], d)
        A, D = A[0][None], D[:, 0]  # B = 1: [1, T, I], [K, T, J]
        pair = (A, D) if vc[0] == 0 else (D, A)
    else:
        return None
    return pair[::-1] if flipped else pair


def _side_gram(x: Array, y: Array, dtype) -> Array:
    """``[K or 1, P, Q]`` inner products x_p . y_q of two sides (ids: one-hot rows)."""
    if x.ndim == 1 and y.ndim == 1:
        return (x[:, None] == y[None, :]).astype(dtype)[None]
    if x.ndim == 1:
        return jnp.swapaxes(jnp.take(y, x, axis=2), 1, 2)
    if y.ndim == 1:
        return jnp.take(x, y, axis=2)
    return jnp.matmul(x, jnp.swapaxes(y, 1, 2), precision=_HIGHEST)


def _multi_sq(uses: list[Use], acts: dict, deltas: dict, scaled: bool) -> Array | None:
    """``[K]`` ||sum_u g_u||^2 = sum_{u,v} <g_u, g_v> of a 2-D root used several times (a tied
    embedding: gathered rows and an output projection), each <g_u, g_v> in Gram form
    sum_{p,q} (L_up . L_vq)(R_up . R_vq), never forming g; None where a use has no factors or
    materialising the gradient costs fewer FLOPs."""
    facs = [_factors(u, acts[u.tap], deltas[u.tap]) for u in uses]
    if any(f is None for f in facs):
        return None
    rows, cols = uses[0].root_aval.shape
    size = lambda x: x.shape[-2] if x.ndim == 3 else x.shape[0]  # noqa: E731
    width = lambda x, y: x.shape[-1] if x.ndim == 3 and y.ndim == 3 else 1  # noqa: E731
    gram = sum(
        size(lu) * size(lv) * (width(lu, lv) + width(ru, rv)) for lu, ru in facs for lv, rv in facs
    )
    materialise = rows * cols + sum(
        size(lu) * (rows if lu.ndim == 3 else 1) * (cols if ru.ndim == 3 else 1) for lu, ru in facs
    )
    if gram > materialise:
        return None
    dtype = deltas[uses[0].tap].dtype
    sides, scales = [], []
    for pair in facs:
        s = jnp.ones((1,), dtype)
        normed = []
        for x in pair:
            if x.ndim == 3:
                m = _max_abs(x, (1, 2), scaled)
                x, s = x / m[:, None, None], s * m
            normed.append(x)
        sides.append(normed)
        scales.append(s)
    top = jnp.max(jnp.stack(jnp.broadcast_arrays(*scales)), axis=0)
    w = [s / top for s in scales]
    core = jnp.zeros(deltas[uses[0].tap].shape[:1], dtype)
    for u, (lu, ru) in enumerate(sides):
        for v in range(u, len(sides)):
            lv, rv = sides[v]
            term = jnp.sum(_side_gram(lu, lv, dtype) * _side_gram(ru, rv, dtype), axis=(1, 2))
            core = core + (1 if u == v else 2) * w[u] * w[v] * term
    return _scaled_sq(core, top)


def _root_sq(uses: list[Use], acts: dict, deltas: dict, scaled: bool, k: int) -> Array:
    """``[K]`` squared norm of one root's gradient for one example and scan iteration:
    acts[tap] its activations, deltas[tap] ``[K, *out]``."""
    fast = (
        _fast_sq(uses[0], acts[uses[0].tap], deltas[uses[0].tap], scaled, k)
        if len(uses) == 1
        else _multi_sq(uses, acts, deltas, scaled)
    )
    if fast is not None:
        return fast

    def one(ds: dict) -> Array:
        g = sum(_use_grad(u, acts[u.tap], ds[u.tap]) for u in uses)
        s = _max_abs(g, None, scaled)
        return _scaled_sq(jnp.sum((g / s) ** 2), s)

    return jax.vmap(one)(deltas)


def stacked_root_sq(
    uses: list[Use], acts: dict, deltas: dict, depth: int, scaled: bool, k: int
) -> Array:
    """``_root_sq`` summed over ``depth`` leading scan axes (acts: axis 0, deltas: axis 1) for
    one example; ``k`` outputs in all (deltas may hold fewer where the caller vmaps)."""
    if depth == 0:
        return _root_sq(uses, acts, deltas, scaled, k)
    per = jax.vmap(
        lambda a, d: stacked_root_sq(uses, a, d, depth - 1, scaled, k), in_axes=(0, 1), out_axes=0
    )(acts, deltas)
    return jnp.sum(per, axis=0)


def fast_static(use: Use) -> bool:
    """Whether ``use`` takes a linear form (no materialised gradient), known before tracing."""
    name = use.prim.name
    if name in ELEMENTWISE:
        return _same_rank(use) and _broadcast_tail(use) is not None
    return use.bijective and (
        name == "dot_general"
        or (name == "conv_general_dilated" and _conv_fast(use))
        or (name == "gather" and _gather_fast(use))
    )
