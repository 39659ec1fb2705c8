"""The Laplace approximation (LA) and proxy-Hessian baselines.

Posterior N(theta*, Sigma) with precision Sigma^-1 = C + lambda I, C a curvature from
``gnuq.curvature`` and lambda the prior precision that MAP training and MCMC use. Predictions:

    linearised epistemic   g^T Sigma g,  g = grad_theta p_k(x | theta*)   (the paper's LA)
    sampled moments        over theta_s ~ N(theta*, Sigma) pushed through the network:
                           Var_s[p_k(x | theta_s)] (non-linearised epistemic) and
                           E_s[p_k (1 - p_k)] (the "Laplace aleatoric" of the paper's Table 6)

For the layer-wise structures (``kfac``, ``diag``) of a model made of Dense layers, g^T Sigma g
is computed without forming g: example n's gradient in layer l is the outer product a delta^T
(a the layer input with a 1 appended for the bias, delta the gradient w.r.t. its
pre-activation), so with Sigma_l = (A (x) B + lambda I)^-1, A = Qa diag(sa) Qa^T and
B = Qb diag(sb) Qb^T,

    g_l^T Sigma_l g_l = sum_ij (Qa^T a)_i^2 (Qb^T delta)_j^2 / (sa_i sb_j + lambda)

(for ``diag``: sum_ij a_i^2 delta_j^2 / (D_ij + lambda)), every delta from one batched backward
pass per output, as in the estimator's dense identity.

Proxy Hessians (paper Sec. 3.1): the empirical Fisher of part of the data (``mask``) as C, so
U_A = g^T (F_A + lambda I)^-1 g, while the gradient norm is U_I = ||g||^2.

An indefinite exact Hessian (common at an Adam or even an L-BFGS MAP of an MLP) gives a precision
that is not positive definite: ``posterior`` then FALLS BACK to the GGN of the same data with a
``RuntimeWarning`` naming the smallest eigenvalue (it never returns NaN), unless
``on_indefinite="raise"``.
"""

import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.flatten_util import ravel_pytree

from gnuq import likelihoods
from gnuq.baselines.curvature import (
    Curvature,
    curvature,
    get_path,
    layer_backward,
    restrict,
    set_path,
    stack_dense,
    unstack_dense,
)
from gnuq.baselines.mcmc import predictive_moments
from gnuq.chunking import chunked_map
from gnuq.dense import dense_obstacle
from gnuq.types import ApplyFn, Array, Params, PRNGKey

LINEARISED_METHODS = ("auto", "dense", "vmap")
DEFAULT_CHUNK = {"dense": 2048, "vmap": 32}


class LayerInverse(NamedTuple):
    """One Dense layer's block of Sigma, for per-example gradients vec(a delta^T).

    That block's part of g^T Sigma g is sum_ij (qa^T a)_i^2 (qb^T delta)_j^2 weights_ij, with
    ``a [d_in (+1)]`` (1 appended for the bias), ``delta [d_out]``; ``qa``/``qb`` None mean the
    identity (no rotation).
    """

    qa: Array | None  # [d_in (+1), d_in (+1)]
    qb: Array | None  # [d_out, d_out]
    weights: Array  # [d_in (+1), d_out]


class Posterior(NamedTuple):
    """A Gaussian N(theta*, Sigma) over all parameters or over one sub-tree (``path``).

    ``inv_quad(v [..., P]) -> [...]`` is v^T Sigma v and ``sample(key, n) -> [n, P]`` draws
    theta - theta*, both in the flat (``ravel_pytree``) coordinates of that (sub-)tree.
    ``layer_inverse(path, use_bias)`` gives the Dense layer at ``path``'s block of Sigma when
    Sigma is block-diagonal over Dense layers (kfac, diag), else it is None.
    """

    structure: str
    kind: str  # the curvature actually used (after any fallback)
    prior_precision: float
    path: tuple[str, ...] | None  # None: all parameters
    inv_quad: Callable[[Array], Array]
    sample: Callable[[PRNGKey, int], Array]
    layer_inverse: Callable[[tuple[str, ...], bool], LayerInverse] | None = None


def posterior(
    curv: Curvature,
    params: Params,
    prior_precision: float,
    *,
    fallback: Callable[[], Curvature] | None = None,
    on_indefinite: str = "fallback",
) -> Posterior:
    """Build N(theta*, (C + lambda I)^-1) from a curvature.

    ``fallback()`` returns the GGN to use when an exact Hessian makes the precision indefinite
    (``laplace_posterior`` passes it); without one, or with ``on_indefinite="raise"``, that raises.
    """
    if not prior_precision > 0:
        raise ValueError(f"prior_precision must be positive, got {prior_precision}")
    if on_indefinite not in ("fallback", "raise"):
        raise ValueError(f"on_indefinite must be 'fallback' or 'raise', got {on_indefinite!r}")
    lam = prior_precision
    if curv.structure in ("full", "last_layer"):
        precision = curv.matrix + lam * jnp.eye(curv.matrix.shape[0], dtype=curv.matrix.dtype)
        chol = jnp.linalg.cholesky(precision)
        if not bool(jnp.all(jnp.isfinite(chol))):
            smallest = float(jnp.linalg.eigvalsh(precision)[0])
            message = (
                f"the {curv.kind} precision (curvature + prior) is not positive definite: "
                f"smallest eigenvalue {smallest:.3g}"
            )
            if on_indefinite == "raise" or fallback is None:
                raise np.linalg.LinAlgError(message + "; use kind='ggn'")
            warnings.warn(message + "; using the GGN instead", RuntimeWarning, stacklevel=2)
            return posterior(fallback(), params, prior_precision, on_indefinite="raise")

        def inv_quad(v):
            w = jsl.solve_triangular(chol, v.T if v.ndim > 1 else v, lower=True)
            return jnp.sum(w**2, axis=0)

        def sample(key, n):
            z = jax.random.normal(key, (chol.shape[0], n), chol.dtype)
            return jsl.solve_triangular(chol.T, z, lower=False).T  # L^-T z ~ N(0, Sigma)

        return Posterior(curv.structure, curv.kind, lam, curv.path, inv_quad, sample)

    _, unravel = ravel_pytree(params)
    if curv.structure == "diag":
        d = curv.diagonal + lam

        def diag_layer(path: tuple[str, ...], use_bias: bool) -> LayerInverse:
            return LayerInverse(None, None, stack_dense(get_path(unravel(1 / d), path), use_bias))

        return Posterior(
            "diag",
            curv.kind,
            lam,
            None,
            lambda v: jnp.sum(v**2 / d, axis=-1),
            lambda key, n: jax.random.normal(key, (n, d.size), d.dtype) / jnp.sqrt(d),
            diag_layer,
        )

    # kfac: per layer (A (x) B + lambda I)^-1 in the eigenbases of A and B
    eig = [(jnp.linalg.eigh(f.A), jnp.linalg.eigh(f.B)) for f in curv.factors]
    blocks = {
        (f.path, f.use_bias): LayerInverse(qa, qb, 1 / (jnp.outer(ea, eb) + lam))
        for f, ((ea, qa), (eb, qb)) in zip(curv.factors, eig, strict=True)
    }

    def kfac_layer(path: tuple[str, ...], use_bias: bool) -> LayerInverse:
        if (path, use_bias) not in blocks:
            raise ValueError(f"no KFAC factor for the Dense layer {'/'.join(path)}")
        return blocks[(path, use_bias)]

    def layer_quad(v):
        tree = unravel(v)
        total = 0.0
        for f, ((ea, qa), (eb, qb)) in zip(curv.factors, eig, strict=True):
            m = qa.T @ stack_dense(get_path(tree, f.path), f.use_bias) @ qb
            total = total + jnp.sum(m**2 / (jnp.outer(ea, eb) + lam))
        return total

    def layer_sample(key):
        tree = jax.tree.map(jnp.zeros_like, params)
        for k, (f, ((ea, qa), (eb, qb))) in zip(
            jax.random.split(key, len(curv.factors)),
            zip(curv.factors, eig, strict=True),
            strict=True,
        ):
            z = jax.random.normal(k, (ea.size, eb.size), ea.dtype)
            m = qa @ (z / jnp.sqrt(jnp.clip(jnp.outer(ea, eb), 0.0) + lam)) @ qb.T
            tree = set_path(tree, f.path, unstack_dense(m, f.use_bias))
        return ravel_pytree(tree)[0]

    def inv_quad(v):
        return jax.vmap(layer_quad)(v.reshape(-1, v.shape[-1])).reshape(v.shape[:-1])

    def sample(key, n):
        return jax.vmap(layer_sample)(jax.random.split(key, n))

    return Posterior("kfac", curv.kind, lam, None, inv_quad, sample, kfac_layer)


def laplace_posterior(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    y: Array,
    likelihood: likelihoods.Likelihood,
    prior_precision: float,
    *,
    kind: str = "ggn",
    structure: str = "full",
    mask: Array | None = None,
    on_indefinite: str = "fallback",
    **curvature_options,
) -> Posterior:
    """Curvature at ``params`` plus the prior, in one call; see ``posterior`` for fallbacks."""

    def build(k: str) -> Curvature:
        return curvature(
            apply_fn,
            params,
            x,
            y,
            likelihood,
            kind=k,
            structure=structure,
            mask=mask,
            **curvature_options,
        )

    return posterior(
        build(kind),
        params,
        prior_precision,
        fallback=(lambda: build("ggn")) if kind == "hessian" else None,
        on_indefinite=on_indefinite,
    )


def proxy_posterior(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    y: Array,
    likelihood: likelihoods.Likelihood,
    prior_precision: float,
    mask: Array,
    structure: str = "full",
) -> Posterior:
    """N(theta*, (F_mask + lambda I)^-1), F_mask the empirical Fisher of the masked examples."""
    return laplace_posterior(
        apply_fn,
        params,
        x,
        y,
        likelihood,
        prior_precision,
        kind="ef",
        structure=structure,
        mask=mask,
    )


def linearised_epistemic(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    likelihood: likelihoods.Likelihood,
    post: Posterior,
    chunk_size: int | None = None,
    method: str = "auto",
) -> Array:
    """``[N, K]`` g^T Sigma g with g = grad_theta predict_k(x_n), the estimator's gradients.

    ``method``: ``"dense"`` forms no per-example gradient (layer inputs and pre-activation
    gradients in the eigenbases of the KFAC factors, or weighted by the diagonal; needs a kfac or
    diag posterior over a model made of Dense layers); ``"vmap"`` forms each g with
    ``vmap(jacrev)`` and applies ``post.inv_quad`` (any posterior, any model); ``"auto"`` picks
    dense where it applies. ``chunk_size``: examples per chunk (default 2048 dense, 32 vmap).
    """
    return linearised_epistemic_fn(
        apply_fn, params, likelihood, post, chunk_size=chunk_size, method=method
    )(x)


def linearised_epistemic_fn(
    apply_fn: ApplyFn,
    params: Params,
    likelihood: likelihoods.Likelihood,
    post: Posterior,
    *,
    chunk_size: int | None = None,
    method: str = "auto",
) -> Callable[[Array], Array]:
    """``linearised_epistemic`` as a jitted ``x [N, ...] -> [N, K]``, compiled once per shape.

    For querying one posterior on many batches; arguments as in ``linearised_epistemic``.
    """
    if method not in LINEARISED_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {LINEARISED_METHODS}")

    @jax.jit
    def query(x: Array) -> Array:
        resolved = _resolve_linearised(apply_fn, params, x, post, method)
        chunk = chunk_size or DEFAULT_CHUNK[resolved]
        if resolved == "dense":
            return chunked_map(
                lambda xc: _dense_inv_quad(apply_fn, params, xc, likelihood, post), x, chunk
            )
        return _vmap_inv_quad(apply_fn, params, x, likelihood, post, chunk)

    return query


def _resolve_linearised(
    apply_fn: ApplyFn, params: Params, x: Array, post: Posterior, method: str
) -> str:
    if method == "vmap":
        return method
    if post.layer_inverse is None:
        reason = f"the {post.structure} posterior is not block-diagonal over Dense layers"
    else:
        reason = dense_obstacle(apply_fn, params, x)
    if reason is None:
        return "dense"
    if method == "dense":
        raise ValueError(f"method='dense' does not apply: {reason}. Use method='vmap'.")
    return "vmap"


def _dense_inv_quad(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    likelihood: likelihoods.Likelihood,
    post: Posterior,
) -> Array:
    """``[n, K]`` g^T Sigma g from layer inputs and pre-activation gradients (module docstring)."""

    def cotangents(pred: Array) -> Array:  # one per output k: e_k at every example
        k = pred.shape[1]
        return jnp.broadcast_to(jnp.eye(k, dtype=pred.dtype)[:, None, :], (k, *pred.shape))

    pred, inputs, deltas, layers = layer_backward(
        apply_fn, params, x, likelihood.predict, cotangents
    )
    total = jnp.zeros(pred.shape, pred.dtype)
    for a, d, layer in zip(inputs, deltas, layers, strict=True):
        block = post.layer_inverse(tuple(layer.path), layer.use_bias)
        a = a.astype(pred.dtype)
        if layer.use_bias:
            a = jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], axis=1)
        if block.qa is not None:
            a = a @ block.qa
        if block.qb is not None:
            d = d @ block.qb  # [K, n, d_out]
        total = total + jnp.einsum("nj,knj->nk", a**2 @ block.weights, d**2)
    return total


def _vmap_inv_quad(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    likelihood: likelihoods.Likelihood,
    post: Posterior,
    chunk: int,
) -> Array:
    """``[N, K]`` post.inv_quad of each example's gradients formed with ``vmap(jacrev)``."""
    if post.path is None:
        fn, sub = apply_fn, params
    else:
        fn, sub = restrict(apply_fn, params, post.path)
    flat, unravel = ravel_pytree(sub)

    def predict(theta, xi):
        return likelihood.predict(fn(unravel(theta), xi[None]))[0]  # [K]

    return chunked_map(jax.vmap(lambda xi: post.inv_quad(jax.jacrev(predict)(flat, xi))), x, chunk)


def sampled_moments(
    key: PRNGKey,
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    likelihood: likelihoods.Likelihood,
    post: Posterior,
    num_samples: int = 1000,
    sample_chunk: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance and mean p(1 - p) of the predictions under theta ~ N(theta*, Sigma)."""
    sub = params if post.path is None else get_path(params, post.path)
    flat, unravel = ravel_pytree(sub)
    draws = flat + post.sample(key, num_samples)  # [S, P]

    def predict(theta, xx):
        full = unravel(theta) if post.path is None else set_path(params, post.path, unravel(theta))
        return likelihood.predict(apply_fn(full, xx))

    return predictive_moments(predict, draws[None], x, sample_chunk)


class Spectrum(NamedTuple):
    eigenvalues: np.ndarray  # ascending
    min: float
    max: float
    ratio: float  # max / min; inf when min <= 0


def spectrum(matrix: Array) -> Spectrum:
    """Eigenvalues of a symmetric curvature matrix (Table 9's range and max/min ratio)."""
    eigs = np.linalg.eigvalsh(np.asarray(matrix, np.float64))
    lo, hi = float(eigs[0]), float(eigs[-1])
    return Spectrum(eigs, lo, hi, hi / lo if lo > 0 else float("inf"))
