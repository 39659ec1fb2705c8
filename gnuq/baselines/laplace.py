"""The Laplace approximation (LA) and proxy-Hessian baselines.

Posterior N(theta*, Sigma) with precision Sigma^-1 = C + lambda I, C a curvature from
``gnuq.curvature`` and lambda the prior precision that MAP training and MCMC use; each curvature
structure builds its own Sigma (``gnuq.baselines.structures``). Predictions:

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
import numpy as np
from jax.flatten_util import ravel_pytree

from gnuq import likelihoods
from gnuq.baselines.curvature import curvature, restrict
from gnuq.baselines.moments import predictive_moments
from gnuq.baselines.structures import Covariance, Curvature, IndefiniteError, LayerInverse
from gnuq.chunking import chunked_map
from gnuq.dense import (
    check_method,
    layer_backward,
    output_basis,
    resolve_method,
    with_bias_input,
)
from gnuq.types import ApplyFn, Array, Params, PRNGKey

DEFAULT_CHUNK = {"dense": 2048, "vmap": 32}


class Posterior(NamedTuple):
    """A Gaussian N(theta*, Sigma) over all parameters or over one sub-tree (``path``).

    ``inv_quad(v [..., P]) -> [...]`` is v^T Sigma v and ``sample(key, n) -> [n, P]`` draws
    theta - theta*, both in the flat (``ravel_pytree``) coordinates of that (sub-)tree; the
    structure's ``covariance`` object computes both. ``layer_inverse(path, use_bias)`` gives the
    Dense layer at ``path``'s block of Sigma when Sigma is block-diagonal over Dense layers (kfac,
    diag), else ``layer_inverse`` is None.
    """

    structure: str
    kind: str  # the curvature actually used (after any fallback)
    prior_precision: float
    path: tuple[str, ...] | None  # None: all parameters
    covariance: Covariance

    def inv_quad(self, v: Array) -> Array:
        return self.covariance.inv_quad(v)

    def sample(self, key: PRNGKey, n: int) -> Array:
        return self.covariance.sample(key, n)

    @property
    def layer_inverse(self) -> Callable[[tuple[str, ...], bool], LayerInverse] | None:
        return getattr(self.covariance, "layer_inverse", None)


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
    try:
        covariance = curv.covariance(params, prior_precision)
    except IndefiniteError as err:
        if on_indefinite == "raise" or fallback is None:
            raise IndefiniteError(f"{err}; use kind='ggn'") from None
        warnings.warn(f"{err}; using the GGN instead", RuntimeWarning, stacklevel=2)
        return posterior(fallback(), params, prior_precision, on_indefinite="raise")
    return Posterior(curv.structure, curv.kind, prior_precision, curv.path, covariance)


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
    check_method(method)  # now, not at the first query

    @jax.jit
    def query(x: Array) -> Array:
        blocked = None
        if post.layer_inverse is None:
            blocked = f"the {post.structure} posterior is not block-diagonal over Dense layers"
        resolved = resolve_method(apply_fn, params, x, method, blocked)
        chunk = chunk_size or DEFAULT_CHUNK[resolved]
        if resolved == "dense":
            return chunked_map(
                lambda xc: _dense_inv_quad(apply_fn, params, xc, likelihood, post), x, chunk
            )
        return _vmap_inv_quad(apply_fn, params, x, likelihood, post, chunk)

    return query


def _dense_inv_quad(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    likelihood: likelihoods.Likelihood,
    post: Posterior,
) -> Array:
    """``[n, K]`` g^T Sigma g from layer inputs and pre-activation gradients (module docstring)."""
    pred, inputs, deltas, layers = layer_backward(
        apply_fn, params, x, likelihood.predict, output_basis
    )
    total = jnp.zeros(pred.shape, pred.dtype)
    for a, d, layer in zip(inputs, deltas, layers, strict=True):
        block = post.layer_inverse(tuple(layer.path), layer.use_bias)
        a = with_bias_input(a.astype(pred.dtype), layer.use_bias)
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
    fn, sub = _over_posterior_params(apply_fn, params, post)
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
    fn, sub = _over_posterior_params(apply_fn, params, post)
    flat, unravel = ravel_pytree(sub)
    draws = flat + post.sample(key, num_samples)  # [S, P]

    def predict(theta, xx):
        return likelihood.predict(fn(unravel(theta), xx))

    return predictive_moments(predict, draws[None], x, sample_chunk)


def _over_posterior_params(apply_fn: ApplyFn, params: Params, post: Posterior):
    """``(fn, sub)``: the model as a function of the parameters ``post`` covers (all, or the
    sub-tree at ``post.path`` with the others fixed at ``params``)."""
    if post.path is None:
        return apply_fn, params
    return restrict(apply_fn, params, post.path)


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
