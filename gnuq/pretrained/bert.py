"""A compact BERT encoder with a linear classification head, in pure JAX.

    h_0 = LayerNorm(E_word[ids] + E_pos[0..L-1] + E_type[0])
    h_l = LayerNorm(u + FFN(u)),  u = LayerNorm(h_{l-1} + MHA(h_{l-1}))   (post-norm, exact GELU)
    z   = sum_t m_t h_T,t / sum_t m_t        (mean over the non-padding tokens, m_t = [ids_t != 0])
    f   = z W + b                            (the head: [K] logits)

``apply(params, ids [N, L] int) -> [N, K]`` is a plain function of a params pytree, so the
estimators, the Laplace baselines and optax treat it like any other model. Layers are stacked
along a leading axis and run with ``lax.scan`` (one compiled layer). The layout follows Hugging
Face's ``BertModel`` (weights transposed to ``x @ W``); ``from_hf_tensors`` reads its tensors.
Mean pooling is what the sentence-transformers checkpoints were trained with; the unused pooler
and dropout are left out (fine-tuning here is deterministic).
"""

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gnuq.types import Array, Params, PRNGKey

PAD_ID = 0


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab_size: int = 2
    eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}")

    @classmethod
    def from_hf(cls, config: Mapping) -> "BertConfig":
        """From a Hugging Face ``config.json`` of a BERT model (absolute positions, GELU)."""
        if config.get("model_type") != "bert":
            raise ValueError(f"not a BERT config: model_type={config.get('model_type')!r}")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported (gelu only)")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        return cls(
            vocab_size=config["vocab_size"],
            hidden=config["hidden_size"],
            layers=config["num_hidden_layers"],
            heads=config["num_attention_heads"],
            intermediate=config["intermediate_size"],
            max_positions=config["max_position_embeddings"],
            type_vocab_size=config.get("type_vocab_size", 2),
            eps=config.get("layer_norm_eps", 1e-12),
        )


def init_head(key: PRNGKey, hidden: int, num_outputs: int = 1) -> Params:
    """A fresh linear head on ``hidden`` features: N(0, 0.02^2) weights (BERT's), zero bias."""
    return {
        "kernel": 0.02 * jax.random.normal(key, (hidden, num_outputs)),
        "bias": jnp.zeros(num_outputs),
    }


def from_hf_tensors(tensors: Mapping[str, np.ndarray], cfg: BertConfig) -> Params:
    """The encoder part of the params pytree from a ``BertModel``'s named tensors.

    Accepts names with or without a ``bert.`` prefix; the pooler is not used. Raises naming the
    first missing tensor or shape mismatch.
    """
    names = {k.removeprefix("bert."): v for k, v in tensors.items()}

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in names:
            raise KeyError(f"tensor {name!r} is missing from the checkpoint")
        value = np.asarray(names[name], np.float32)
        if value.shape != shape:
            raise ValueError(f"tensor {name!r} has shape {value.shape}, expected {shape}")
        return value

    h, f = cfg.hidden, cfg.intermediate

    def stacked(fmt: str, shape: tuple[int, ...], transpose: bool = False) -> np.ndarray:
        per_layer = [get(fmt.format(i), shape) for i in range(cfg.layers)]
        return np.stack([w.T for w in per_layer] if transpose else per_layer)

    prefix = "encoder.layer.{}."
    linear = {
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "o": ("attention.output.dense", h, h),
        "ffn_in": ("intermediate.dense", h, f),
        "ffn_out": ("output.dense", f, h),
    }
    layers = {}
    for name, (hf, d_in, d_out) in linear.items():
        layers[f"{name}_kernel"] = stacked(prefix + hf + ".weight", (d_out, d_in), transpose=True)
        layers[f"{name}_bias"] = stacked(prefix + hf + ".bias", (d_out,))
    for name, hf in (("attn_ln", "attention.output.LayerNorm"), ("ffn_ln", "output.LayerNorm")):
        layers[f"{name}_scale"] = stacked(prefix + hf + ".weight", (h,))
        layers[f"{name}_bias"] = stacked(prefix + hf + ".bias", (h,))
    embeddings = {
        "word": get("embeddings.word_embeddings.weight", (cfg.vocab_size, h)),
        "position": get("embeddings.position_embeddings.weight", (cfg.max_positions, h)),
        "token_type": get("embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, h)),
        "ln_scale": get("embeddings.LayerNorm.weight", (h,)),
        "ln_bias": get("embeddings.LayerNorm.bias", (h,)),
    }
    return {"embeddings": embeddings, "layers": layers}


def _layer_norm(x: Array, scale: Array, bias: Array, eps: float) -> Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


def hidden_states(encoder: Params, ids: Array, cfg: BertConfig) -> Array:
    """``[N, L, hidden]`` last-layer token states for token ids ``[N, L]`` (0 = padding)."""
    n, length = ids.shape
    if length > cfg.max_positions:
        raise ValueError(f"sequences of {length} tokens exceed max_positions={cfg.max_positions}")
    emb = encoder["embeddings"]
    x = emb["word"][ids] + emb["position"][:length] + emb["token_type"][0]
    x = _layer_norm(x, emb["ln_scale"], emb["ln_bias"], cfg.eps)
    # padding keys get a large negative score: exp underflows to exactly 0 in the softmax
    key_bias = jnp.where(ids == PAD_ID, -1e9, 0.0).astype(x.dtype)[:, None, None, :]
    d_head = cfg.hidden // cfg.heads

    def layer(x: Array, w: Params) -> tuple[Array, None]:
        def heads(name: str) -> Array:  # [N, heads, L, d_head]
            y = x @ w[f"{name}_kernel"] + w[f"{name}_bias"]
            return y.reshape(n, length, cfg.heads, d_head).transpose(0, 2, 1, 3)

        scores = heads("q") @ heads("k").transpose(0, 1, 3, 2) / np.sqrt(d_head) + key_bias
        context = jax.nn.softmax(scores, axis=-1) @ heads("v")
        context = context.transpose(0, 2, 1, 3).reshape(n, length, cfg.hidden)
        attn = context @ w["o_kernel"] + w["o_bias"]
        x = _layer_norm(x + attn, w["attn_ln_scale"], w["attn_ln_bias"], cfg.eps)
        ffn = jax.nn.gelu(x @ w["ffn_in_kernel"] + w["ffn_in_bias"], approximate=False)
        ffn = ffn @ w["ffn_out_kernel"] + w["ffn_out_bias"]
        return _layer_norm(x + ffn, w["ffn_ln_scale"], w["ffn_ln_bias"], cfg.eps), None

    x, _ = jax.lax.scan(layer, x, encoder["layers"])
    return x


def mean_pool(states: Array, ids: Array) -> Array:
    """``[N, hidden]`` mean of the token states over non-padding positions."""
    mask = (ids != PAD_ID).astype(states.dtype)[..., None]
    return jnp.sum(states * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def embed(encoder: Params, ids: Array, cfg: BertConfig) -> Array:
    """``[N, hidden]`` sentence embeddings (mean-pooled last-layer states)."""
    return mean_pool(hidden_states(encoder, ids, cfg), ids)


def head_apply(head: Params, features: Array) -> Array:
    """``[N, K]`` logits of the linear head on pooled features ``[N, hidden]``."""
    return features @ head["kernel"] + head["bias"]


@functools.lru_cache(maxsize=16)  # one function per config: jit caches keyed on it hit
def classifier(cfg: BertConfig):
    """``apply(params, ids [N, L]) -> [N, K]`` logits, params = {"encoder", "head"}."""

    def apply(params: Params, ids: Array) -> Array:
        return head_apply(params["head"], embed(params["encoder"], ids, cfg))

    return apply
