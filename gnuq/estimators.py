"""THE METHOD: epistemic and aleatoric uncertainty from one forward and one backward pass.

For a prediction p_c(x | theta) at the point estimate theta*, the delta method with an isotropic
parameter covariance (Cov[theta] = I, paper Eq. 3-4) gives

    epistemic(x, c) = ||grad_theta p_c(x | theta*)||^2      (over ALL parameters)
    aleatoric(x, c) = p_c(x | theta*) (1 - p_c(x | theta*))  (Bernoulli variance, Eq. 8)

and for a regression mean f(x; theta): epistemic = ||grad_theta f(x; theta*)||^2.

Two ways to get the per-example squared gradient norms:

- ``"vmap"``: ``vmap(jacrev)`` of the per-example prediction, for ANY ``apply(params, x)``, in
  chunks of ``chunk_size`` examples so memory stays bounded.
- ``"dense"``: for models whose parameters all sit in ``flax.linen.Dense`` layers applied once per
  example. A Dense layer's per-example weight gradient is the outer product a_i delta_i^T (a: layer
  input, delta: gradient w.r.t. the layer's pre-activation), so
  ||g_i||^2 = sum_layers (||a_i||^2 + 1) ||delta_i||^2, with every delta from one batched backward
  pass per class. No per-example gradient is ever materialised.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gnuq import likelihoods
from gnuq.chunking import chunked_map
from gnuq.dense import dense_obstacle, layer_backward, output_basis, resolve_method
from gnuq.types import ApplyFn, Array, Params

DEFAULT_CHUNK = {"dense": 2048, "vmap": 16}


class Uncertainty(NamedTuple):
    """Per-input uncertainty at the point estimate.

    Shapes: ``[N, C]`` for the categorical likelihood, ``[N]`` for bernoulli (positive class) and
    gaussian. For gaussian, ``probs`` holds the predicted mean and ``aleatoric`` the noise variance
    passed as ``noise_var`` (NaN when none was given: the model does not predict it).
    """

    epistemic: Array
    aleatoric: Array
    probs: Array


class SequenceUncertainty(NamedTuple):
    """Per-sequence uncertainty of a generated answer (paper Eq. 9-10), shapes ``[B]``.

    ``probs`` is the mean answer-token probability p_bar; ``token_probs`` ``[B, T]`` holds
    p(y_t | y_<t, x) at answer positions and 0 elsewhere.
    """

    epistemic: Array
    aleatoric: Array
    probs: Array
    token_probs: Array


def uncertainty(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    *,
    likelihood: str,
    method: str = "auto",
    chunk_size: int | None = None,
    noise_var: float | None = None,
) -> Uncertainty:
    """Gradient-norm epistemic and point-estimate aleatoric uncertainty for a batch of inputs.

    Args:
      apply_fn: ``apply_fn(params, x) -> outputs``; logits ``[N, C]`` (categorical), logits
        ``[N]``/``[N, 1]`` (bernoulli) or means ``[N]``/``[N, 1]`` (gaussian).
      params: the point estimate theta*, any pytree of float arrays.
      x: inputs ``[N, ...]`` with a leading batch axis.
      likelihood: ``"categorical"``, ``"bernoulli"`` or ``"gaussian"``.
      method: ``"dense"`` (outer-product identity), ``"vmap"`` (any model) or ``"auto"`` (dense
        when the model qualifies, see ``dense_applies``).
      chunk_size: examples per chunk (default 2048 for dense, 16 for vmap).
      noise_var: gaussian observation variance, returned as the aleatoric part.
    """
    lik = likelihoods.get(likelihood, noise_var)
    x = _check_batch(apply_fn, params, x, lik)
    method = resolve_method(apply_fn, params, x, method)
    chunk = chunk_size or DEFAULT_CHUNK[method]
    epi, pred = _compiled(apply_fn, lik, method, chunk)(params, x)
    if lik.name == "categorical":
        return Uncertainty(epi, pred * (1 - pred), pred)
    epi, pred = epi[:, 0], pred[:, 0]
    if lik.name == "bernoulli":
        return Uncertainty(epi, pred * (1 - pred), pred)
    noise = jnp.nan if noise_var is None else noise_var
    return Uncertainty(epi, jnp.full_like(pred, noise), pred)


def squared_grad_norms(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    *,
    likelihood: str,
    method: str = "auto",
    chunk_size: int | None = None,
) -> Array:
    """``[N, K]`` squared norms ||grad_theta predict_k(x_n)||^2, K = C or 1 (not categorical)."""
    lik = likelihoods.get(likelihood)
    x = _check_batch(apply_fn, params, x, lik)
    method = resolve_method(apply_fn, params, x, method)
    return _compiled(apply_fn, lik, method, chunk_size or DEFAULT_CHUNK[method])(params, x)[0]


def dense_applies(apply_fn: ApplyFn, params: Params, x: Array) -> bool:
    """Whether the outer-product identity covers every parameter of ``apply_fn`` on ``x``."""
    return dense_obstacle(apply_fn, params, jnp.asarray(x)) is None


def sequence_uncertainty(
    logits_fn: ApplyFn,
    params: Params,
    tokens: Array,
    answer_mask: Array,
    *,
    per_token: bool = False,
    chunk_size: int = 1,
) -> SequenceUncertainty:
    """Uncertainty of answer tokens under an autoregressive model (paper Sec. 3.4).

    p_t = p(y_t | y_<t, x) read at answer positions (``answer_mask[b, t] = 1``) from
    ``logits_fn(params, tokens) [B, T, V]``, whose position t predicts token t + 1.
    With p_bar = mean_t p_t over answer positions:

      epistemic = ||grad_theta p_bar||^2        (one backward pass; keeps the cross-terms)
                  or, with ``per_token=True``, mean_t ||grad_theta p_t||^2 (no cross-terms)
      aleatoric = mean_t p_t (1 - p_t)

    Sequences are processed ``chunk_size`` at a time (1 keeps one model's gradient in memory);
    the per-token variant takes one answer position at a time (one backward pass each).
    """
    tokens = jnp.asarray(tokens)
    mask = jnp.asarray(answer_mask)
    if tokens.ndim != 2 or mask.shape != tokens.shape:
        raise ValueError(
            f"tokens and answer_mask must both be [B, T]; got {tuple(tokens.shape)} and "
            f"{tuple(mask.shape)}"
        )
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}")
    if tokens.shape[0] == 0:
        raise ValueError("empty batch: tokens has no sequences")
    mask_np = np.asarray(mask)
    if mask_np[:, 0].any():
        raise ValueError("answer_mask[:, 0] must be 0: the first token has no prediction")
    empty = np.flatnonzero(mask_np.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"sequences {empty.tolist()} have no answer tokens in answer_mask")
    _check_finite_params(params)
    mask = mask.astype(jnp.result_type(float))
    epi, pt = _sequence_program(logits_fn, per_token, chunk_size)(params, tokens, mask)
    count = jnp.sum(mask, axis=1)
    return SequenceUncertainty(
        epistemic=epi,
        aleatoric=jnp.sum(pt * (1 - pt), axis=1) / count,
        probs=jnp.sum(pt, axis=1) / count,
        token_probs=pt,
    )


@functools.lru_cache(maxsize=64)
def _sequence_program(logits_fn: ApplyFn, per_token: bool, chunk_size: int):
    """The jitted ``(params, tokens, mask) -> (epistemic [B], token probs [B, T])`` of
    ``sequence_uncertainty``, built once per model and setting, so that calls with the same
    shapes reuse one compilation."""

    def token_probs(p: Params, tok: Array, m: Array) -> Array:
        logits = logits_fn(p, tok[None])[0]
        probs = jax.nn.softmax(logits[:-1], axis=-1)
        pt = jnp.take_along_axis(probs, tok[1:, None], axis=-1)[:, 0]
        return jnp.concatenate([jnp.zeros(1, pt.dtype), pt]) * m

    def mean_prob(p: Params, ex: tuple[Array, Array]) -> Array:
        tok, m = ex
        return (jnp.sum(token_probs(p, tok, m)) / jnp.sum(m))[None]

    def per_token_sq(p: Params, tok: Array, m: Array) -> Array:
        # one answer position at a time: a [T, P] Jacobian of an LLM would not fit in memory,
        # and lax.cond skips the positions outside the answer
        def one(t: Array) -> Array:
            def sq(_) -> Array:
                g = jax.grad(lambda q: token_probs(q, tok, m)[t])(p)
                return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g))

            return jax.lax.cond(m[t] > 0, sq, lambda _: jnp.zeros((), m.dtype), None)

        return jnp.sum(jax.lax.map(one, jnp.arange(tok.shape[0]))) / jnp.sum(m)

    def run(p: Params, tok: Array, m: Array) -> tuple[Array, Array]:
        if per_token:
            epi = jax.lax.map(lambda ex: per_token_sq(p, *ex), (tok, m))
        else:
            epi = _vmap_sq_norms(mean_prob, p, (tok, m), chunk_size)[:, 0]
        return epi, jax.vmap(lambda t, mm: token_probs(p, t, mm))(tok, m)

    return jax.jit(run)


# ---------------------------------------------------------------------------------------------
# per-example squared gradient norms


@functools.lru_cache(maxsize=64)
def _compiled(
    apply_fn: ApplyFn, lik: likelihoods.Likelihood, method: str, chunk: int
) -> Callable[[Params, Array], tuple[Array, Array]]:
    """A jitted ``(params, x) -> (sq_norms [N, K], predictions [N, K])``, cached per model."""

    def predict(p: Params, x: Array) -> Array:
        return lik.predict(apply_fn(p, x))

    if method == "dense":

        def run(p: Params, x: Array) -> tuple[Array, Array]:
            return chunked_map(lambda xc: _dense_chunk(apply_fn, lik, p, xc), x, chunk)

    else:

        def run(p: Params, x: Array) -> tuple[Array, Array]:
            sq = _vmap_sq_norms(lambda q, xi: predict(q, xi[None])[0], p, x, chunk)
            return sq, chunked_map(lambda xc: predict(p, xc), x, chunk)

    return jax.jit(run)


def _vmap_sq_norms(f: Callable, params: Params, examples, chunk: int) -> Array:
    """``[N, K]`` squared norms of grad_theta f(theta, example)_k, with f returning ``[K]``."""

    def one(ex) -> Array:
        jac = jax.jacrev(f)(params, ex)  # leaves [K, *leaf.shape]
        return sum(jnp.sum(j.reshape(j.shape[0], -1) ** 2, axis=1) for j in jax.tree.leaves(jac))

    return chunked_map(jax.vmap(one), examples, chunk)


# ---------------------------------------------------------------------------------------------
# the dense-layer identity


def _dense_chunk(
    apply_fn: ApplyFn, lik: likelihoods.Likelihood, params: Params, x: Array
) -> tuple[Array, Array]:
    """Squared gradient norms ``[n, K]`` and predictions ``[n, K]`` for one chunk:
    sum_layers (||a||^2 + 1) ||delta_k||^2 with every delta_k from ``layer_backward``."""
    pred, inputs, deltas, layers = layer_backward(apply_fn, params, x, lik.predict, output_basis)
    sq = 0.0
    for a, d, layer in zip(inputs, deltas, layers, strict=True):  # d [K, n, features]
        a_sq = jnp.sum(a.astype(pred.dtype) ** 2, axis=-1) + (1.0 if layer.use_bias else 0.0)
        sq = sq + a_sq[None, :] * jnp.sum(d**2, axis=-1)
    return sq.T, pred


# ---------------------------------------------------------------------------------------------
# input checks


def _check_batch(apply_fn: ApplyFn, params: Params, x, lik: likelihoods.Likelihood) -> Array:
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"x must have a leading batch axis, [N, features...]; got shape {tuple(x.shape)}. "
            "For a single input pass x[None]."
        )
    if x.shape[0] == 0:
        raise ValueError("empty batch: x has no rows")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        bad = np.flatnonzero(~np.isfinite(np.asarray(x)).reshape(x.shape[0], -1).all(axis=1))
        raise ValueError(f"x contains NaN or inf in rows {bad[:10].tolist()}")
    _check_finite_params(params)
    try:
        out = jax.eval_shape(apply_fn, params, x)
    except Exception as err:
        raise ValueError(
            f"apply_fn(params, x) failed for x of shape {tuple(x.shape)}: does the feature count "
            f"match the model? ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err
    if out.shape[:1] != x.shape[:1]:
        raise ValueError(f"apply_fn returned shape {tuple(out.shape)} for {x.shape[0]} inputs")
    lik.outputs(jnp.zeros(out.shape, out.dtype))  # raises on a shape the likelihood cannot read
    return x


def _check_finite_params(params: Params) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if isinstance(leaf, jax.core.Tracer):
            continue
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise ValueError(f"params{jax.tree_util.keystr(path)} contains NaN or inf")
