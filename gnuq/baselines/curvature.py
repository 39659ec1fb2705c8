"""Curvature of the negative log-likelihood at the MAP: exact Hessian, GGN and empirical Fisher.

For per-example outputs f_n = f(x_n; theta) [K] and NLL l_n(f_n), with an optional weight
m_n in {0, 1} per example (``mask``: the proxy study builds curvature from part of the data):

    hessian  H  = d^2/dtheta^2 sum_n m_n l_n
    ggn      G  = sum_n m_n J_n^T Lambda_n J_n,   J_n = df_n/dtheta, Lambda_n = d^2 l_n / df_n^2
    ef       F  = sum_n m_n g_n g_n^T,             g_n = dl_n/dtheta (the empirical Fisher)

in four structures:

    full        a dense [P, P] matrix over all parameters (refused above ``max_full_params``)
    diag        its diagonal [P] (ggn, ef)
    last_layer  the full matrix over the final ``nn.Dense`` layer, the other parameters fixed
    kfac        per Dense layer, A (x) B with A = sum_n m_n a_n a_n^T / sum_n m_n (layer inputs,
                with a 1 appended for the bias) and B = sum_n m_n sum_k d_nk d_nk^T, d_nk the
                gradient w.r.t. the layer's pre-activation of the k-th column of Lambda_n^(1/2) J_n
                (ggn) or of l_n (ef). Exact for one example; an approximation otherwise.

The GGN and the empirical Fisher are positive semi-definite; the Hessian need not be (see
``laplace.posterior`` for what happens then). Flat parameter vectors follow ``ravel_pytree``.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gnuq import likelihoods
from gnuq.chunking import chunked_sum
from gnuq.dense import dense_layers, dense_obstacle, tapped_apply
from gnuq.types import ApplyFn, Array, Params

KINDS = ("hessian", "ggn", "ef")
STRUCTURES = ("full", "diag", "last_layer", "kfac")
MAX_FULL_PARAMS = 20_000


class KronFactor(NamedTuple):
    """One Dense layer's Kronecker factors; ``path`` locates it in the params pytree."""

    path: tuple[str, ...]
    A: Array  # [d_in (+1 with bias), d_in (+1)]
    B: Array  # [d_out, d_out]
    use_bias: bool


class Curvature(NamedTuple):
    kind: str
    structure: str
    matrix: Array | None = None  # full, last_layer: [P, P] over the flat (sub-)parameters
    diagonal: Array | None = None  # diag: [P]
    factors: tuple[KronFactor, ...] = ()  # kfac
    path: tuple[str, ...] | None = None  # last_layer: where the layer's params sit


def curvature(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    y: Array,
    likelihood: likelihoods.Likelihood,
    *,
    kind: str = "ggn",
    structure: str = "full",
    mask: Array | None = None,
    chunk_size: int = 128,
    max_full_params: int = MAX_FULL_PARAMS,
) -> Curvature:
    """The ``kind`` curvature of the summed NLL over the (masked) data, in ``structure`` form."""
    if kind not in KINDS:
        raise ValueError(f"unknown curvature kind {kind!r}; choose one of {KINDS}")
    if structure not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r}; choose one of {STRUCTURES}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    weights = jnp.ones(x.shape[0]) if mask is None else jnp.asarray(mask, jnp.float32)
    if weights.shape != (x.shape[0],):
        raise ValueError(f"mask must be [N={x.shape[0]}], got {tuple(weights.shape)}")
    if structure == "last_layer":
        path = last_dense_path(apply_fn, params, x[:1])
        sub_apply, sub_params = restrict(apply_fn, params, path)
        full = _full(
            sub_apply, sub_params, x, y, weights, likelihood, kind, chunk_size, max_full_params
        )
        return Curvature(kind, structure, matrix=full, path=path)
    if structure == "full":
        full = _full(apply_fn, params, x, y, weights, likelihood, kind, chunk_size, max_full_params)
        return Curvature(kind, structure, matrix=full)
    if kind == "hessian":
        raise ValueError(
            f"the exact Hessian is offered in the 'full' and 'last_layer' structures, not "
            f"{structure!r}; use kind='ggn' (its positive semi-definite approximation)"
        )
    if structure == "diag":
        return Curvature(
            kind,
            structure,
            diagonal=_diag(apply_fn, params, x, y, weights, likelihood, kind, chunk_size),
        )
    return Curvature(
        kind, structure, factors=_kfac(apply_fn, params, x, y, weights, likelihood, kind)
    )


def dense_matrix(curv: Curvature, params: Params) -> Array:
    """The curvature as a dense matrix over the flat params (tests and small models only)."""
    flat, unravel = ravel_pytree(params)
    if curv.structure in ("full", "last_layer"):
        return curv.matrix
    if curv.structure == "diag":
        return jnp.diag(curv.diagonal)

    # kfac: apply (A (x) B) to every basis vector
    def mv(v):
        tree = unravel(v)
        out = jax.tree.map(jnp.zeros_like, tree)
        for f in curv.factors:
            layer = get_path(tree, f.path)
            M = stack_dense(layer, f.use_bias)
            out = set_path(out, f.path, unstack_dense(f.A @ M @ f.B, f.use_bias))
        return ravel_pytree(out)[0]

    return jax.vmap(mv)(jnp.eye(flat.size, dtype=flat.dtype))


# ---------------------------------------------------------------------------------------------
# structures


def _guard(n_params: int, max_full_params: int) -> None:
    if n_params > max_full_params:
        gib = n_params**2 * 4 / 2**30
        raise ValueError(
            f"a full curvature matrix over {n_params:,} parameters needs {gib:,.1f} GiB "
            f"(limit: max_full_params={max_full_params:,}); use structure='kfac', 'diag' or "
            "'last_layer'"
        )


def _full(apply_fn, params, x, y, weights, lik, kind, chunk, max_full_params) -> Array:
    flat, unravel = ravel_pytree(params)
    _guard(flat.size, max_full_params)

    def out_fn(theta, xb):
        return lik.outputs(apply_fn(unravel(theta), xb))

    if kind == "hessian":

        def block(batch, valid):
            xb, yb, mb = batch
            mb = mb * valid
            loss = lambda t: jnp.sum(mb * lik.nll(out_fn(t, xb), yb))  # noqa: E731
            return jax.hessian(loss)(flat)

    elif kind == "ggn":

        def block(batch, valid):
            xb, yb, mb = batch
            mb = mb * valid
            J = jax.vmap(lambda xi: jax.jacrev(out_fn)(flat, xi[None])[0])(xb)  # [c, K, P]
            lam = _output_hessians(lik, out_fn(flat, xb), yb)  # [c, K, K]
            return jnp.einsum("n,nkp,nkl,nlq->pq", mb, J, lam, J)

    else:

        def block(batch, valid):
            xb, yb, mb = batch
            mb = mb * valid
            g = _nll_grads(lik, out_fn, flat, xb, yb)  # [c, P]
            return jnp.einsum("n,np,nq->pq", mb, g, g)

    return jax.jit(lambda b: chunked_sum(block, b, chunk))((x, y, weights))


def _diag(apply_fn, params, x, y, weights, lik, kind, chunk) -> Array:
    flat, unravel = ravel_pytree(params)

    def out_fn(theta, xb):
        return lik.outputs(apply_fn(unravel(theta), xb))

    if kind == "ggn":

        def block(batch, valid):
            xb, yb, mb = batch
            mb = mb * valid
            J = jax.vmap(lambda xi: jax.jacrev(out_fn)(flat, xi[None])[0])(xb)
            lam = _output_hessians(lik, out_fn(flat, xb), yb)
            return jnp.einsum("n,nkp,nkl,nlp->p", mb, J, lam, J)

    else:

        def block(batch, valid):
            xb, yb, mb = batch
            mb = mb * valid
            g = _nll_grads(lik, out_fn, flat, xb, yb)
            return jnp.einsum("n,np->p", mb, g**2)

    return jax.jit(lambda b: chunked_sum(block, b, chunk))((x, y, weights))


def _kfac(apply_fn, params, x, y, weights, lik, kind) -> tuple[KronFactor, ...]:
    reason = dense_obstacle(apply_fn, params, x)
    if reason is not None:
        raise ValueError(f"KFAC needs a model made of Dense layers: {reason}")

    @jax.jit
    def factors(x, y, weights):
        def cotangents(out):
            if kind == "ggn":  # columns of Lambda_n^(1/2), one cotangent [N, K] per column
                return jnp.moveaxis(_sqrt_psd(_output_hessians(lik, out, y)), 2, 0)
            return jax.grad(lambda o: jnp.sum(lik.nll(o, y)))(out)[None]  # the NLL's gradient

        _, inputs, deltas, layers = layer_backward(apply_fn, params, x, lik.outputs, cotangents)
        result = []
        for a, d, layer in zip(inputs, deltas, layers, strict=True):
            if layer.use_bias:
                a = jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], axis=1)
            A = jnp.einsum("n,ni,nj->ij", weights, a, a) / jnp.sum(weights)
            B = jnp.einsum("n,kni,knj->ij", weights, d, d)
            result.append((A, B))
        return result

    layers, _ = dense_layers(apply_fn, params, x[:1])
    return tuple(
        KronFactor(tuple(layer.path), A, B, layer.use_bias)
        for layer, (A, B) in zip(layers, factors(x, y, weights), strict=True)
    )


# ---------------------------------------------------------------------------------------------
# helpers shared with laplace.py


def layer_backward(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    head: Callable[[Array], Array],
    cotangents: Callable[[Array], Array],
) -> tuple[Array, list[Array], list[Array], list]:
    """Every Dense layer's inputs and pre-activation gradients, from batched backward passes.

    With ``out = head(apply_fn(params, x)) [N, K]`` and ``cot = cotangents(out) [K', N, K]``,
    returns ``(out, inputs, deltas, layers)`` in call order: ``inputs[l] [N, d_in]`` and
    ``deltas[l] [K', N, d_out]``, ``deltas[l][k, n]`` = d <cot[k, n], out[n]> / d z_l(x_n), the
    gradient w.r.t. the layer's pre-activation z_l. Example n's weight gradient of that
    scalar is then the outer product ``[inputs[l][n], 1] deltas[l][k, n]^T`` (bias as the last
    row, as in ``stack_dense``): one backward pass per k serves every example at once.
    """
    _, _, layers = tapped_apply(apply_fn, params, x, None)  # traced for the layer widths only
    taps = [jnp.zeros((x.shape[0], layer.features), x.dtype) for layer in layers]

    def outputs(t):
        raw, inputs, _ = tapped_apply(apply_fn, params, x, t)
        return head(raw), inputs

    out, vjp_fn, inputs = jax.vjp(outputs, taps, has_aux=True)
    (deltas,) = jax.vmap(vjp_fn)(cotangents(out))
    return out, inputs, deltas, layers


def last_dense_path(apply_fn: ApplyFn, params: Params, x: Array) -> tuple[str, ...]:
    """Path in ``params`` of the last ``nn.Dense`` layer that ``apply_fn`` calls."""
    layers, _ = dense_layers(apply_fn, params, x)
    if not layers:
        raise ValueError("structure='last_layer' needs a model whose last layer is a nn.Dense")
    path = tuple(layers[-1].path)
    try:
        get_path(params, path)
    except (KeyError, TypeError) as err:
        raise ValueError(f"the last Dense layer {'/'.join(path)} is not found in params") from err
    return path


def restrict(apply_fn: ApplyFn, params: Params, path: tuple[str, ...]):
    """``(sub_apply, sub_params)``: the model as a function of the sub-tree at ``path`` alone."""

    def sub_apply(sub: Params, x: Array) -> Array:
        return apply_fn(set_path(params, path, sub), x)

    return sub_apply, get_path(params, path)


def get_path(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree, path, value):
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = set_path(tree[path[0]], path[1:], value)
    return type(tree)(out) if not isinstance(tree, dict) else out


def stack_dense(layer: dict, use_bias: bool) -> Array:
    """Dense params as one ``[d_in (+1), d_out]`` matrix, bias as the last row."""
    if use_bias:
        return jnp.concatenate([layer["kernel"], layer["bias"][None]], axis=0)
    return layer["kernel"]


def unstack_dense(M: Array, use_bias: bool) -> dict:
    return {"kernel": M[:-1], "bias": M[-1]} if use_bias else {"kernel": M}


def _output_hessians(lik, out: Array, y: Array) -> Array:
    """``[N, K, K]`` Hessians of each example's NLL w.r.t. its outputs."""
    return jax.vmap(jax.hessian(lambda o, yi: lik.nll(o[None], yi[None])[0]))(out, y)


def _nll_grads(lik, out_fn: Callable, flat: Array, xb: Array, yb: Array) -> Array:
    """``[c, P]`` per-example gradients of the NLL."""

    def one(xi, yi):
        return jax.grad(lambda t: lik.nll(out_fn(t, xi[None]), yi[None])[0])(flat)

    return jax.vmap(one)(xb, yb)


def _sqrt_psd(m: Array) -> Array:
    """Symmetric square roots of ``[..., K, K]`` positive semi-definite matrices."""
    w, v = jnp.linalg.eigh(m)
    return (v * jnp.sqrt(jnp.clip(w, 0.0))[..., None, :]) @ jnp.swapaxes(v, -1, -2)
