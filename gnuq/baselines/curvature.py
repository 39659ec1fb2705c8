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

Each structure is a small object (``gnuq.baselines.structures``: ``Full``, ``Diagonal``,
``Kron``) that knows its dense form and its posterior covariance (C + lambda I)^-1; ``curvature``
is the one place that maps a ``structure`` name to how it is computed. The GGN and the empirical
Fisher are positive semi-definite; the Hessian need not be (see ``laplace.posterior`` for what
happens then). Flat parameter vectors follow ``ravel_pytree``.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gnuq import likelihoods
from gnuq.baselines.structures import Curvature, Diagonal, Full, Kron, KronFactor
from gnuq.chunking import chunked_sum
from gnuq.dense import (
    dense_layers,
    dense_obstacle,
    get_path,
    layer_backward,
    set_path,
    with_bias_input,
)
from gnuq.types import ApplyFn, Array, Params

KINDS = ("hessian", "ggn", "ef")
MAX_FULL_PARAMS = 20_000


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
    """The ``kind`` curvature of the summed NLL over the (masked) data, in ``structure`` form
    (one of ``STRUCTURES``: a ``Full``, ``Diagonal`` or ``Kron`` object)."""
    if kind not in KINDS:
        raise ValueError(f"unknown curvature kind {kind!r}; choose one of {KINDS}")
    if structure not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r}; choose one of {tuple(STRUCTURES)}")
    likelihoods.check_data(likelihood, x, y)
    weights = jnp.ones(x.shape[0]) if mask is None else jnp.asarray(mask, jnp.float32)
    if weights.shape != (x.shape[0],):
        raise ValueError(f"mask must be [N={x.shape[0]}], got {tuple(weights.shape)}")
    if kind == "hessian" and structure not in ("full", "last_layer"):
        raise ValueError(
            f"the exact Hessian is offered in the 'full' and 'last_layer' structures, not "
            f"{structure!r}; use kind='ggn' (its positive semi-definite approximation)"
        )
    build = STRUCTURES[structure]
    return build(apply_fn, params, x, y, weights, likelihood, kind, chunk_size, max_full_params)


def dense_matrix(curv: Curvature, params: Params) -> Array:
    """The curvature as a dense matrix over the flat params (tests and small models only);
    for ``last_layer``, over the flat parameters of that layer."""
    return curv.dense(params)


# ---------------------------------------------------------------------------------------------
# structures


def _full_structure(apply_fn, params, x, y, weights, lik, kind, chunk, max_full_params) -> Full:
    return Full(kind, _full(apply_fn, params, x, y, weights, lik, kind, chunk, max_full_params))


def _last_layer_structure(
    apply_fn, params, x, y, weights, lik, kind, chunk, max_full_params
) -> Full:
    path = last_dense_path(apply_fn, params, x[:1])
    sub_apply, sub_params = restrict(apply_fn, params, path)
    matrix = _full(sub_apply, sub_params, x, y, weights, lik, kind, chunk, max_full_params)
    return Full(kind, matrix, path)


def _diag_structure(apply_fn, params, x, y, weights, lik, kind, chunk, _) -> Diagonal:
    return Diagonal(kind, _diag(apply_fn, params, x, y, weights, lik, kind, chunk))


def _kfac_structure(apply_fn, params, x, y, weights, lik, kind, _, __) -> Kron:
    return Kron(kind, _kfac(apply_fn, params, x, y, weights, lik, kind))


# structure name -> how it is computed, each
# (apply_fn, params, x, y, weights, lik, kind, chunk, max_full_params) -> the structure object
STRUCTURES: dict[str, Callable[..., Curvature]] = {
    "full": _full_structure,
    "diag": _diag_structure,
    "last_layer": _last_layer_structure,
    "kfac": _kfac_structure,
}


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
            a = with_bias_input(a, layer.use_bias)
            A = jnp.einsum("n,ni,nj->ij", weights, a, a) / jnp.sum(weights)
            B = jnp.einsum("n,kni,knj->ij", weights, d, d)
            result.append((A, B))
        return result

    layers, _, _ = dense_layers(apply_fn, params, x[:1])
    return tuple(
        KronFactor(tuple(layer.path), A, B, layer.use_bias)
        for layer, (A, B) in zip(layers, factors(x, y, weights), strict=True)
    )


# ---------------------------------------------------------------------------------------------
# the last layer and the output Hessians


def last_dense_path(apply_fn: ApplyFn, params: Params, x: Array) -> tuple[str, ...]:
    """Path in ``params`` of the last ``nn.Dense`` layer that ``apply_fn`` calls."""
    layers, _, _ = dense_layers(apply_fn, params, x)
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
