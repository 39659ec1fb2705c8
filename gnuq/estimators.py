"""THE METHOD: epistemic and aleatoric uncertainty from one forward and one backward pass.

For a prediction p_c(x | theta) at the point estimate theta*, the delta method with an isotropic
parameter covariance (Cov[theta] = I, paper Eq. 3-4) gives

    epistemic(x, c) = ||grad_theta p_c(x | theta*)||^2      (over ALL parameters)
    aleatoric(x, c) = p_c(x | theta*) (1 - p_c(x | theta*))  (Bernoulli variance, Eq. 8)

and for a regression mean f(x; theta): epistemic = ||grad_theta f(x; theta*)||^2.

Three ways to get the per-example squared gradient norms (``method=``):

- ``"engine"`` (what ``"auto"`` picks): ``gnuq.engine`` reads the traced computation and takes
  every parameter used linearly (``dot_general`` -- Dense, einsum, ``x @ W``, attention
  projections --, convolutions, bias adds, LayerNorm/RMSNorm scales, embedding gathers, layers
  stacked under ``lax.scan``) through the outer-product, Gram or materialised form of its
  per-example gradient, from one batched backward pass per output; the leaves it cannot serve
  take ``vmap(jacrev)``. Works for Flax, plain ``jnp`` functions, any JAX function of a params
  pytree.
- ``"vmap"``: ``vmap(jacrev)`` of the per-example prediction, for ANY ``apply(params, x)``, in
  chunks of ``chunk_size`` examples so memory stays bounded: the reference.
- ``"dense"``: the original identity for models whose parameters all sit in
  ``flax.linen.Dense`` layers applied once per example,
  ||g_i||^2 = sum_layers (||a_i||^2 + 1) ||delta_i||^2 (kept for the Laplace baselines' KFAC).

Every path evaluates an example as a batch of one. A model that mixes examples (a mean over the
batch, batch normalisation in training mode) has no per-example gradient of its batched outputs:
``"auto"``, ``"engine"`` and ``"dense"`` probe for that (does output n move when input m != n
does?) and raise; ``"vmap"`` computes the batch-of-one model's values without the probe.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gnuq import checks, engine, likelihoods
from gnuq.chunking import chunked_map
from gnuq.dense import dense_obstacle, layer_backward, output_basis
from gnuq.types import ApplyFn, Array, Params

METHODS = ("auto", "engine", "dense", "vmap")
DEFAULT_CHUNK = {"dense": 2048, "vmap": 16, "engine": None}  # engine: from its memory estimate


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
      method: ``"auto"`` (= ``"engine"``), ``"engine"``, ``"vmap"`` (the reference, any model)
        or ``"dense"`` (Dense-only models); see the module docstring.
      chunk_size: examples per chunk, a positive integer (default: 16 for vmap, 2048 for dense,
        and for the engine as many as fit its memory estimate of 128 MiB).
      noise_var: gaussian observation variance, returned as the aleatoric part.

    Works inside ``jax.jit``; there, the checks that need values (finite inputs, the probe for
    mixing examples) use the values of an earlier call outside ``jit`` for the same model and
    shapes, else probe the model on stand-in values.
    """
    lik = likelihoods.get(likelihood, noise_var)
    x = jnp.asarray(x)
    epi, pred = _program(apply_fn, params, x, lik, method, chunk_size)(params, x)
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
    x = jnp.asarray(x)
    return _program(apply_fn, params, x, lik, method, chunk_size)(params, x)[0]


def dense_applies(apply_fn: ApplyFn, params: Params, x: Array) -> bool:
    """Whether the Dense-layer identity (``method="dense"``) covers every parameter of
    ``apply_fn`` on ``x``."""
    return dense_obstacle(apply_fn, params, jnp.asarray(x)) is None


def engine_coverage(
    apply_fn: ApplyFn, params: Params, x: Array, *, likelihood: str
) -> dict[str, bool]:
    """Per parameter leaf (by its path in ``params``): True where the engine serves it through a
    linear form, False where it falls back to ``vmap(jacrev)``."""
    lik = likelihoods.get(likelihood)
    x = jnp.asarray(x)

    def one(p: Params, xi: Array) -> Array:
        return lik.predict(apply_fn(p, xi[None]))[0]

    example = jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    served = engine.analyse(one, params, example).served
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    return dict(zip(paths, served, strict=True))


def sequence_uncertainty(
    logits_fn: ApplyFn,
    params: Params,
    tokens: Array,
    answer_mask: Array,
    *,
    per_token: bool = False,
    chunk_size: int = 1,
    method: str = "engine",
) -> SequenceUncertainty:
    """Uncertainty of answer tokens under an autoregressive model (paper Sec. 3.4).

    p_t = p(y_t | y_<t, x) read at answer positions (``answer_mask[b, t] = 1``) from
    ``logits_fn(params, tokens) [B, T, V]``, whose position t predicts token t + 1.
    With p_bar = mean_t p_t over answer positions:

      epistemic = ||grad_theta p_bar||^2        (one backward pass; keeps the cross-terms)
                  or, with ``per_token=True``, mean_t ||grad_theta p_t||^2 (no cross-terms)
      aleatoric = mean_t p_t (1 - p_t)

    Sequences are processed ``chunk_size`` at a time; ``method="engine"`` (default) takes the
    Gram forms of ``gnuq.engine`` (no weight gradient is formed where T^2 (d_in + d_out) <
    T d_in d_out), ``"vmap"`` the reference ``vmap(jacrev)``. The per-token variant takes one
    answer position at a time (one backward pass each).
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
    checks.check_finite_params(params)
    checks.check_chunk(chunk_size)
    if method not in ("engine", "vmap"):
        raise ValueError(f"unknown method {method!r}; choose 'engine' or 'vmap'")
    mask = mask.astype(jnp.result_type(float))
    epi, pt = _sequence_program(logits_fn, per_token, chunk_size, method)(params, tokens, mask)
    count = jnp.sum(mask, axis=1)
    return SequenceUncertainty(
        epistemic=epi,
        aleatoric=jnp.sum(pt * (1 - pt), axis=1) / count,
        probs=jnp.sum(pt, axis=1) / count,
        token_probs=pt,
    )


@functools.lru_cache(maxsize=64)
def _sequence_program(logits_fn: ApplyFn, per_token: bool, chunk_size: int, method: str):
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
            sq = engine.squared_norms if method == "engine" else _vmap_sq_norms
            epi = sq(mean_prob, p, (tok, m), chunk_size)[:, 0]
        return epi, jax.vmap(lambda t, mm: token_probs(p, t, mm))(tok, m)

    return jax.jit(run)


# ---------------------------------------------------------------------------------------------
# per-example squared gradient norms


@functools.lru_cache(maxsize=64)
def _compiled(
    apply_fn: ApplyFn, lik: likelihoods.Likelihood, method: str, chunk: int | None
) -> Callable[[Params, Array], tuple[Array, Array]]:
    """A jitted ``(params, x) -> (sq_norms [N, K], predictions [N, K])``, cached per model."""

    def predict(p: Params, x: Array) -> Array:
        return lik.predict(apply_fn(p, x))

    def one(q: Params, xi: Array) -> Array:
        return predict(q, xi[None])[0]

    if method == "dense":

        def run(p: Params, x: Array) -> tuple[Array, Array]:
            return chunked_map(lambda xc: _dense_chunk(apply_fn, lik, p, xc), x, chunk)

    elif method == "engine":

        def run(p: Params, x: Array) -> tuple[Array, Array]:
            return engine.squared_norms_and_outputs(one, p, x, chunk)

    else:

        def run(p: Params, x: Array) -> tuple[Array, Array]:
            sq = _vmap_sq_norms(one, p, x, chunk)
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
        a = a.astype(pred.dtype)
        if layer.use_bias:
            a = jnp.concatenate([a, jnp.ones((*a.shape[:-1], 1), a.dtype)], axis=-1)
        sq = sq + (_norm(a)[None, :] * _norm(d)) ** 2  # norms first: ||a||^2 of 1e20 overflows
    return sq.T, pred


def _norm(a: Array) -> Array:
    """Euclidean norm over the last axis without overflow: max|a| ||a / max|a|||."""
    s = jnp.max(jnp.abs(a), axis=-1, keepdims=True)
    s = jnp.where(s > 0, s, 1.0)
    return s[..., 0] * jnp.sqrt(jnp.sum((a / s) ** 2, axis=-1))


# ---------------------------------------------------------------------------------------------
# input checks and the per-model structure, cached


_STRUCTURE: dict = {}  # structure key -> the compiled program (checks done, method resolved)
_STRUCTURE_MAX = 256


def _program(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    lik: likelihoods.Likelihood,
    method: str,
    chunk_size: int | None,
) -> Callable[[Params, Array], tuple[Array, Array]]:
    """The compiled ``(params, x) -> (sq_norms, predictions)`` after the input checks.

    The structure analysis (output shapes, the method, the mixing probe) depends only on the
    model, the likelihood and the shapes, so it runs once per such key; the value checks (finite
    x and params) run on every call outside ``jit``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    checks.check_chunk(chunk_size)
    leaves, treedef = jax.tree.flatten(params)
    shapes = tuple((np.shape(leaf), getattr(leaf, "dtype", type(leaf))) for leaf in leaves)
    key = (apply_fn, lik, method, chunk_size, x.shape, x.dtype, treedef, shapes)
    program = _STRUCTURE.get(key)
    if program is not None:
        checks.check_values(x, params)
    else:
        checks.check_batch(apply_fn, params, x, lik)
        checks.check_values(x, params)
        resolved = checks.resolve_method(apply_fn, params, x, method)
        chunk = chunk_size or DEFAULT_CHUNK[resolved]
        program = _compiled(apply_fn, lik, resolved, chunk)
        if len(_STRUCTURE) >= _STRUCTURE_MAX:
            _STRUCTURE.clear()
        _STRUCTURE[key] = program
    return program
