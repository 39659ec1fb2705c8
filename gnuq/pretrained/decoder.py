"""A compact decoder-only transformer in pure JAX: Llama (SmolLM2) and Gemma 3 in one forward.

One layer, with RMSNorm(x) = x / sqrt(mean(x^2) + eps) * (o + w)   (o = 0 Llama, 1 Gemma):

    Llama:   h = x + Attn(Norm(x));            y = h + MLP(Norm(h))
    Gemma 3: h = x + Norm(Attn(Norm(x)));      y = h + Norm(MLP(Norm(h)))     ("sandwich" norms)

    Attn(u): q = u Wq, k = u Wk, v = u Wv split into heads (grouped-query: ``heads / kv_heads``
             query heads share one key/value head); Gemma 3 RMS-normalises q and k per head;
             rotary position embedding (rotate-half layout) on q and k; softmax(q k^T * scale
             + causal mask) v Wo, scale = head_dim^-1/2 (Gemma: query_pre_attn_scalar^-1/2)
    MLP(u):  (act(u Wg) * u Wu) Wd,  act = SiLU (SwiGLU, Llama) or tanh-GELU (GeGLU, Gemma)

    x_0    = E[tokens] * embed_scale      (embed_scale = 1 Llama, sqrt(hidden) Gemma)
    logits = Norm(x_L) E^T                (tied embedding), then cap * tanh(logits / cap) if a
                                          final soft-cap is configured

Gemma 3 alternates local layers (attend to the last ``sliding_window`` positions, rotary base
``rope_theta_local``) with a global layer every ``global_every``-th layer (full causal attention,
rotary base ``rope_theta``).

``logits(params, tokens [B, T], cfg) -> [B, T, V]`` (position t predicts token t + 1) is the
uncached forward used for gradients; ``cached_hidden_states`` (``prefill`` / ``decode_step``)
runs the same layers against fixed-size key/value caches, so incremental decoding compiles once
(the decoding loop is ``gnuq.pretrained.generation``). Layers are stacked along a leading axis
and run with ``lax.scan``; params are a plain nested dict of float32 arrays in the layout of
``init``.
"""

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gnuq.types import Array, Params, PRNGKey

ARCHS = ("llama", "gemma3")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Hyper-parameters of a decoder; ``arch`` fixes the layer recipe (see the module docstring).

    ``sliding_window = 0`` means every layer is global. With a window, layer i is global iff
    ``global_every > 0`` and ``(i + 1) % global_every == 0`` (Gemma 3: 6, layers 5, 11, 17), so
    ``global_every = 0`` makes every layer local.
    """

    arch: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    eps: float
    rope_theta: float
    rope_theta_local: float | None = None  # rotary base of local layers (default: rope_theta)
    sliding_window: int = 0
    global_every: int = 0
    query_pre_attn_scalar: float | None = None  # attention scale^-2 (default: head_dim)
    final_softcap: float | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads={self.heads} is not a multiple of kv_heads={self.kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {self.head_dim}")
        if self.sliding_window < 0 or self.global_every < 0:
            raise ValueError("sliding_window and global_every must be >= 0")

    @property
    def gemma(self) -> bool:
        return self.arch == "gemma3"

    @property
    def norm_offset(self) -> float:  # Gemma's RMSNorm multiplies by (1 + w), Llama's by w
        return 1.0 if self.gemma else 0.0

    @property
    def embed_scale(self) -> float:
        return math.sqrt(self.hidden) if self.gemma else 1.0

    @property
    def attn_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def local_layers(self) -> np.ndarray:
        """``[layers]`` bool: which layers use the sliding window."""
        if self.sliding_window == 0:
            return np.zeros(self.layers, bool)
        if self.global_every == 0:
            return np.ones(self.layers, bool)
        return (np.arange(self.layers) + 1) % self.global_every != 0


def init(key: PRNGKey, cfg: DecoderConfig) -> Params:
    """Random parameters for tests: N(0, 0.02^2) weights, norm weights near their identity value
    (perturbed by N(0, 0.1^2) so that a wrong norm formula shows in the outputs)."""
    h, f, n, d = cfg.hidden, cfg.intermediate, cfg.layers, cfg.head_dim
    shapes = {
        "q": (n, h, cfg.heads * d),
        "k": (n, h, cfg.kv_heads * d),
        "v": (n, h, cfg.kv_heads * d),
        "o": (n, cfg.heads * d, h),
        "gate": (n, h, f),
        "up": (n, h, f),
        "down": (n, f, h),
    }
    norms = {"attn_norm": (n, h), "mlp_norm": (n, h)}
    if cfg.gemma:
        norms |= {"q_norm": (n, d), "k_norm": (n, d), "post_attn_norm": (n, h)}
        norms |= {"post_mlp_norm": (n, h)}
    keys = iter(jax.random.split(key, len(shapes) + len(norms) + 2))
    identity = 1.0 - cfg.norm_offset  # the weight w at which (offset + w) = 1
    layers = {name: 0.02 * jax.random.normal(next(keys), s) for name, s in shapes.items()}
    layers |= {name: identity + 0.1 * jax.random.normal(next(keys), s) for name, s in norms.items()}
    return {
        "embed": 0.02 * jax.random.normal(next(keys), (cfg.vocab_size, h)),
        "layers": layers,
        "final_norm": identity + 0.1 * jax.random.normal(next(keys), (h,)),
    }


def num_params(params: Params) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))


# ---------------------------------------------------------------------------------------------
# building blocks


def _rms_norm(x: Array, w: Array, cfg: DecoderConfig) -> Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + cfg.eps)
    return (y * (cfg.norm_offset + w)).astype(x.dtype)


def _rope(x: Array, positions: Array, theta: Array) -> Array:
    """Rotary embedding of ``x [B, T, n, d]`` at ``positions [T]`` (rotate-half layout, as in
    Hugging Face: dimension i pairs with i + d/2, angle = pos * theta^(-2i/d))."""
    d = x.shape[-1]
    inv_freq = theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # [d/2]
    angle = positions.astype(jnp.float32)[:, None] * inv_freq  # [T, d/2]
    cos = jnp.concatenate([jnp.cos(angle)] * 2, -1)[None, :, None, :]
    sin = jnp.concatenate([jnp.sin(angle)] * 2, -1)[None, :, None, :]
    x1, x2 = jnp.split(x, 2, axis=-1)
    return x * cos + jnp.concatenate([-x2, x1], axis=-1) * sin


def _attention_mask(q_pos: Array, k_pos: Array, local: Array, cfg: DecoderConfig) -> Array:
    """``[T, S]`` bool: query at q_pos may see key at k_pos (causal; local layers also need
    q_pos - k_pos < sliding_window, i.e. the last ``sliding_window`` positions incl. itself)."""
    diff = q_pos[:, None] - k_pos[None, :]
    window = cfg.sliding_window if cfg.sliding_window else np.iinfo(np.int32).max
    return (diff >= 0) & (~local | (diff < window))


def _attend(q: Array, k: Array, v: Array, mask: Array, cfg: DecoderConfig) -> Array:
    """Grouped-query attention: ``q [B, T, heads, d]``, ``k, v [B, S, kv_heads, d]``,
    ``mask [T, S]`` -> ``[B, T, heads * d]``."""
    b, t, _, d = q.shape
    group = cfg.heads // cfg.kv_heads
    q = q.reshape(b, t, cfg.kv_heads, group, d)  # query head j uses kv head j // group
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k) * cfg.attn_scale
    # a finite large negative (not -inf): a fully masked row cannot occur (the diagonal is always
    # visible) and finite values keep gradients NaN-free
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    out = jnp.einsum("bkgts,bskd->btkgd", jax.nn.softmax(scores, axis=-1), v)
    return out.reshape(b, t, cfg.heads * d)


def _qkv(w: Params, u: Array, positions: Array, local: Array, cfg: DecoderConfig):
    b, t, _ = u.shape
    d = cfg.head_dim
    q = (u @ w["q"]).reshape(b, t, cfg.heads, d)
    k = (u @ w["k"]).reshape(b, t, cfg.kv_heads, d)
    v = (u @ w["v"]).reshape(b, t, cfg.kv_heads, d)
    if cfg.gemma:  # per-head RMSNorm of queries and keys, before the rotation
        q = _rms_norm(q, w["q_norm"], cfg)
        k = _rms_norm(k, w["k_norm"], cfg)
    theta_local = cfg.rope_theta_local or cfg.rope_theta
    theta = jnp.where(local, theta_local, cfg.rope_theta)
    return _rope(q, positions, theta), _rope(k, positions, theta), v


def _mlp(w: Params, u: Array, cfg: DecoderConfig) -> Array:
    gate = u @ w["gate"]
    act = jax.nn.gelu(gate, approximate=True) if cfg.gemma else jax.nn.silu(gate)
    return (act * (u @ w["up"])) @ w["down"]


def _block(x: Array, w: Params, attn: Array, cfg: DecoderConfig) -> Array:
    """The residual updates around an attention output ``attn [B, T, heads * d]``."""
    a = attn @ w["o"]
    if cfg.gemma:
        a = _rms_norm(a, w["post_attn_norm"], cfg)
    x = x + a
    m = _mlp(w, _rms_norm(x, w["mlp_norm"], cfg), cfg)
    if cfg.gemma:
        m = _rms_norm(m, w["post_mlp_norm"], cfg)
    return x + m


def _embed(params: Params, tokens: Array, cfg: DecoderConfig) -> Array:
    return params["embed"][tokens] * jnp.asarray(cfg.embed_scale, params["embed"].dtype)


def unembed(params: Params, x: Array, cfg: DecoderConfig) -> Array:
    """``[..., V]`` logits of last-layer states ``x [..., hidden]`` (final norm, tied output)."""
    # tied: the output layer IS the input embedding matrix, transposed
    out = _rms_norm(x, params["final_norm"], cfg) @ params["embed"].T
    if cfg.final_softcap:
        out = cfg.final_softcap * jnp.tanh(out / cfg.final_softcap)
    return out


# ---------------------------------------------------------------------------------------------
# uncached forward


def hidden_states(params: Params, tokens: Array, cfg: DecoderConfig) -> Array:
    """``[B, T, hidden]`` last-layer states (before the final norm) for ``tokens [B, T]``."""
    positions = jnp.arange(tokens.shape[1])

    def layer(x: Array, xs: tuple[Params, Array]) -> tuple[Array, None]:
        w, local = xs
        q, k, v = _qkv(w, _rms_norm(x, w["attn_norm"], cfg), positions, local, cfg)
        mask = _attention_mask(positions, positions, local, cfg)
        return _block(x, w, _attend(q, k, v, mask, cfg), cfg), None

    x, _ = jax.lax.scan(layer, _embed(params, tokens, cfg), (params["layers"], cfg.local_layers()))
    return x


def logits(params: Params, tokens: Array, cfg: DecoderConfig) -> Array:
    """``[B, T, V]`` next-token logits for ``tokens [B, T]``: position t predicts token t + 1."""
    return unembed(params, hidden_states(params, tokens, cfg), cfg)


@functools.lru_cache(maxsize=16)  # one function per config: jit caches keyed on it hit
def language_model(cfg: DecoderConfig):
    """``apply(params, tokens [B, T]) -> [B, T, V]`` logits: the ``logits_fn`` that
    ``gnuq.sequence_uncertainty`` takes."""

    def apply(params: Params, tokens: Array) -> Array:
        return logits(params, tokens, cfg)

    return apply


# ---------------------------------------------------------------------------------------------
# key/value-cached forward


class KVCache(NamedTuple):
    """Fixed-size caches ``k, v [layers, B, S, kv_heads, head_dim]``; ``length`` (int32 scalar)
    positions are filled. Keys are stored after the rotation, so a step never recomputes them."""

    k: Array
    v: Array
    length: Array


def empty_cache(cfg: DecoderConfig, batch: int, size: int, dtype=jnp.float32) -> KVCache:
    shape = (cfg.layers, batch, size, cfg.kv_heads, cfg.head_dim)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


def cached_hidden_states(
    params: Params, tokens: Array, cache: KVCache, cfg: DecoderConfig
) -> tuple[Array, KVCache]:
    """Run ``tokens [B, T]`` at positions ``cache.length + [0, T)`` against the cache: their keys
    and values are written into it, queries attend to every filled slot. Unfilled slots have
    positions beyond the query's, so the causal mask hides them."""
    start = cache.length
    positions = start + jnp.arange(tokens.shape[1])
    slots = jnp.arange(cache.k.shape[2])

    def layer(x: Array, xs: tuple[Params, Array, Array, Array]):
        w, local, k_cache, v_cache = xs
        q, k, v = _qkv(w, _rms_norm(x, w["attn_norm"], cfg), positions, local, cfg)
        k_cache = jax.lax.dynamic_update_slice_in_dim(k_cache, k.astype(k_cache.dtype), start, 1)
        v_cache = jax.lax.dynamic_update_slice_in_dim(v_cache, v.astype(v_cache.dtype), start, 1)
        mask = _attention_mask(positions, slots, local, cfg)
        x = _block(x, w, _attend(q, k_cache, v_cache, mask, cfg), cfg)
        return x, (k_cache, v_cache)

    xs = (params["layers"], cfg.local_layers(), cache.k, cache.v)
    x, (k, v) = jax.lax.scan(layer, _embed(params, tokens, cfg), xs)
    return x, KVCache(k, v, start + tokens.shape[1])


@functools.partial(jax.jit, static_argnames=("cfg", "cache_size"))
def prefill(
    params: Params, tokens: Array, cfg: DecoderConfig, cache_size: int
) -> tuple[Array, KVCache]:
    """Logits ``[B, T, V]`` of a prompt ``tokens [B, T]`` and a cache of ``cache_size`` slots
    holding its keys and values."""
    if tokens.shape[1] > cache_size:
        raise ValueError(f"a prompt of {tokens.shape[1]} tokens exceeds cache_size={cache_size}")
    cache = empty_cache(cfg, tokens.shape[0], cache_size, params["embed"].dtype)
    x, cache = cached_hidden_states(params, tokens, cache, cfg)
    return unembed(params, x, cfg), cache


@functools.partial(jax.jit, static_argnames=("cfg",))
def decode_step(
    params: Params, cache: KVCache, token: Array, cfg: DecoderConfig
) -> tuple[Array, KVCache]:
    """Logits ``[B, V]`` after appending ``token [B]`` at position ``cache.length``. Shapes are
    fixed, so every step reuses one compilation (writing past the cache's end is not checked
    under jit: size the cache for prompt + new tokens)."""
    x, cache = cached_hidden_states(params, token[:, None], cache, cfg)
    return unembed(params, x[:, 0], cfg), cache
