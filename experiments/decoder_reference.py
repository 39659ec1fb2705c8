"""Our decoder's logits against an independent implementation: llama.cpp (``llama-cpp-python``,
the optional extra ``llmref``), which reads the same GGUF files with its own reader,
dequantisation, tokenizer and forward pass.

llama.cpp's CPU backend multiplies a quantised weight by activations that it first quantises to
8 bits (Q8_1 / Q8_K blocks), and keeps keys and values in float16: on the original files it
differs from any float32 forward by far more than rounding. So the sharp comparison runs it on a
float32 copy of each file that llama.cpp itself writes (``llama_model_quantize`` to ``ALL_F32``:
ggml's C dequantisation, independent of the ``gguf`` package we dequantise with), with float32
keys and values and flash attention off; both forwards then compute in float32 from the same
weights. The run on the original quantised file is reported beside it, unasserted, to show what
llama.cpp's own quantised arithmetic changes.

Prompts: those the LLM QA experiment asks (``experiments/llm_qa_answer.py``), with an answer
appended: SmolLM2's chat turn (the template checked against the one in its GGUF), gemma's
few-shot ``Q:/A:`` text and plain text, and for gemma one text longer than its 512-token sliding
window (the experiment's prompts are all shorter). Both implementations get the same token ids
(ours); whether llama.cpp's tokenizer gives the same ids is reported too.

Run as ``python -m experiments.decoder_reference`` (``--assets``, ``--out``): it prints the
largest logit difference per model and prompt and writes them to
``figures/quick/llm_qa/decoder_reference.json``. ``tests/test_decoder_reference.py`` asserts
the tolerances below.
"""

import argparse
import ctypes
import dataclasses
import pathlib
import platform
import sys
import tempfile
import time
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np

from experiments.harness import assets, report
from experiments.llm_qa_answer import ONE_SENTENCE
from gnuq.pretrained import decoder, generation, llm

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "figures" / "quick" / "llm_qa" / "decoder_reference.json"
MODELS = ("smollm2-135m-instruct", "gemma-3-270m")

# Tolerances of the float32 comparison, max |Δlogit| / max |logit|, asserted by the test. The
# dequantised weights are bit-identical (gguf-py's and ggml's, checked on every tensor), so the
# differences come from summation order, transcendental functions and llama.cpp's own shortcuts.
# - llama (SmolLM2): measured 2.5e-6, the size of our own float32 rounding (our float32 forward
#   differs from our float64 one by as much); 1e-5 leaves 4x room and still catches an eps of
#   1e-6 for 1e-5 (8e-4).
# - gemma3: measured 1.3e-3, 50x our float32 rounding (our float32 vs float64: <= 6e-4 / 37 =
#   1.6e-5): llama.cpp's CPU GELU reads a float16 table (input and output rounded to float16;
#   emulating it in ours removes 12 % (short prompts) to 48 % (the long one) of the
#   difference); the rest is llama.cpp's arithmetic that we did not pin down. 3e-3 leaves 2x
#   room; every modelling mistake of PERTURBATIONS moves the logits by 0.45-0.8 of their
#   range, over 300 times more.
REL_TOL = {"llama": 1e-5, "gemma3": 3e-3}
# top-k agreement is asserted only where the k-th and (k+1)-th logits are further apart than
# this many times the largest difference seen: closer ones may swap under rounding
GAP_FACTOR = 2.0
TOP_K = 5
# Mistakes the comparison must catch, applied to our config on each model's last prompt: how far
# each moves our logits from llama.cpp's (relative, as REL_TOL) is reported beside the real
# differences, so the tolerance is seen to separate them
PERTURBATIONS = {
    "llama": {
        "rope base 1e4 instead of 1e5": {"rope_theta": 1e4},
        "RMSNorm eps 1e-6 instead of 1e-5": {"eps": 1e-6},
    },
    "gemma3": {
        "local rope base 1e6 (the global one) instead of 1e4": {"rope_theta_local": 1e6},
        "no sliding window": {"sliding_window": 0},
        "attention scale 1/sqrt(hidden/heads) (27B's)": {"query_pre_attn_scalar": 160.0},
        "RMSNorm eps 1e-5 instead of 1e-6": {"eps": 1e-5},
    },
}


def prompts(name: str) -> dict[str, str]:
    """``{label: text}`` for model ``name``: the experiment's prompts with an answer appended."""
    q1 = "Are people in California allowed to hit their kids?"
    q2 = "if a company wants to open a new television station which agency must it contact"
    if name.startswith("smollm2"):
        ask = f"{ONE_SENTENCE}\nQuestion: {{}}"
        p_true = (
            f"Question: {q1}\nProposed answer: Yes, but not excessively.\nIs the proposed "
            "answer true or false? Answer True or False."
        )
        return {
            "truthfulqa chat + answer": llm.smollm2_chat_prompt(ask.format(q1))
            + "In California, parents may spank their children if it is not excessive.<|im_end|>",
            "nq_open chat + answer": llm.smollm2_chat_prompt(ask.format(q2))
            + "The company must contact the Federal Communications Commission (FCC).",
            "P(True) chat": llm.smollm2_chat_prompt(p_true),
        }
    long_text = "".join(
        f"Line {i}: {i} squared is {i * i}, and {i} cubed is {i**3}.\n" for i in range(24)
    )
    return {
        "truthfulqa few-shot + answer": llm.few_shot_prompt(q1) + " Yes, within limits.",
        "nq_open few-shot + answer": llm.few_shot_prompt(q2) + " The FCC",
        "P(True) plain": f"Question: {q1}\nProposed answer: No\nIs the proposed answer true or "
        "false?\nAnswer:",
        "long text (> sliding window)": long_text,
    }


# ---------------------------------------------------------------------------------------------
# the two implementations


def ours(model: llm.LLM, ids: list[int]) -> dict[str, np.ndarray]:
    """``[T, V]`` logits of our decoder: the uncached forward (the experiment's gradients) and
    the key/value-cached prefill (its generation)."""
    params = jax.tree.map(jnp.asarray, model.params)
    tokens = jnp.asarray([ids], jnp.int32)
    uncached = jax.jit(decoder.language_model(model.config))(params, tokens)
    padded, _ = generation.bucketed(ids)
    cached, _ = decoder.prefill(params, padded[None], model.config, int(padded.size))
    return {"uncached": np.asarray(uncached[0]), "cached": np.asarray(cached[0, : len(ids)])}


def llama_cpp_module():
    """``llama_cpp``, or ImportError naming the extra."""
    from gnuq.pretrained import require

    return require("llama_cpp", "llmref")


def to_f32(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    """A float32 copy of the GGUF ``src``, written by llama.cpp's own quantiser."""
    lc = llama_cpp_module()
    params = lc.llama_model_quantize_default_params()
    params.ftype = lc.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 2
    rc = lc.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> F32) returned {rc}")
    return dst


class Reference:
    """llama.cpp on one GGUF file: float32 keys and values, flash attention off, every
    position's logits kept, and no extra weight buffers (``use_extra_bufts``: repacked or AMX
    weights; the AMX kernels of a build for this CPU die with SIGILL where the kernel has not
    granted the process AMX tile state)."""

    def __init__(self, path: pathlib.Path, n_ctx: int):
        lc = llama_cpp_module()
        low = lc.llama_cpp  # Llama() reads its model defaults from here
        default = low.llama_model_default_params

        def plain():
            params = default()
            params.use_extra_bufts = False
            return params

        f32 = 0  # GGML_TYPE_F32
        low.llama_model_default_params = plain
        try:
            self.llama = lc.Llama(
                model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                logits_all=True, n_threads=2, type_k=f32, type_v=f32, flash_attn=False,
                verbose=False,
            )  # fmt: skip
        finally:
            low.llama_model_default_params = default

    def logits(self, ids: list[int]) -> np.ndarray:
        self.llama.reset()
        self.llama.eval(ids)
        return np.array(self.llama.scores[: len(ids)], np.float32)

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's tokens of ``text``: <bos> as the file asks, control tokens parsed."""
        return self.llama.tokenize(text.encode(), add_bos=True, special=True)

    def chat_prompt(self, question: str) -> str:
        """The GGUF's chat template applied to one user turn (generation prompt added)."""
        lc = llama_cpp_module()
        meta = self.llama.metadata
        formatter = lc.llama_chat_format.Jinja2ChatFormatter(
            meta["tokenizer.chat_template"], eos_token="<|im_end|>", bos_token="<|im_start|>"
        )
        return formatter(messages=[{"role": "user", "content": question}]).prompt


def compare(mine: np.ndarray, ref: np.ndarray) -> dict:
    """Differences of ``[T, V]`` logits: the largest absolute one, relative to the largest
    logit, of the probabilities, and how often the argmax and top-k sets agree (all positions,
    and those whose gaps exceed ``GAP_FACTOR`` times the largest difference)."""
    worst, total, dp = 0.0, 0.0, 0.0
    for a, b in zip(
        np.array_split(mine, -(-len(ref) // 64)),
        np.array_split(ref, -(-len(ref) // 64)),
        strict=True,
    ):
        a, b = a.astype(np.float64), b.astype(np.float64)
        diff = np.abs(a - b)
        worst, total = max(worst, float(diff.max())), total + float(diff.sum())
        dp = max(dp, float(np.abs(_softmax(a) - _softmax(b)).max()))
    scale = float(np.abs(ref).max())
    order = np.argsort(-ref, axis=-1)[:, : TOP_K + 1]
    top = np.take_along_axis(ref, order, -1)
    mine_top = np.argsort(-mine, axis=-1)[:, :TOP_K]
    same_top1 = mine_top[:, 0] == order[:, 0]
    same_topk = np.array(
        [set(a) == set(b) for a, b in zip(mine_top, order[:, :TOP_K], strict=True)]
    )
    clear1 = top[:, 0] - top[:, 1] > GAP_FACTOR * worst
    clear_k = top[:, TOP_K - 1] - top[:, TOP_K] > GAP_FACTOR * worst
    return {
        "tokens": int(ref.shape[0]),
        "max_abs_logit_diff": worst,
        "max_abs_logit": scale,
        "relative": worst / scale,
        "mean_abs_logit_diff": total / ref.size,
        "max_abs_prob_diff": dp,
        "argmax_agree": float(same_top1.mean()),
        f"top{TOP_K}_agree": float(same_topk.mean()),
        "argmax_agree_where_clear": bool(same_top1[clear1].all()),
        f"top{TOP_K}_agree_where_clear": bool(same_topk[clear_k].all()),
    }


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# one model


def check_model(name: str, assets_dir: pathlib.Path, native: bool = True, log=print) -> dict:
    """Every prompt of model ``name`` through ours and llama.cpp (float32 copy; also the original
    quantised file when ``native``): ``{"prompts": {label: ...}, ...}``."""
    gguf = assets.gguf_path(assets.SOURCES[name], assets_dir)
    start = time.monotonic()
    model = assets.load_llm(name, assets_dir)
    texts = prompts(name)
    ids = {label: model.tokenizer.encode(text).ids for label, text in texts.items()}
    n_ctx = 64 * -(-max(map(len, ids.values())) // 64)
    out: dict = {"gguf": gguf.name, "prompts": {}}
    with tempfile.TemporaryDirectory() as tmp:
        f32 = to_f32(gguf, pathlib.Path(tmp) / "f32.gguf")
        ref = Reference(f32, n_ctx)
        if name.startswith("smollm2"):
            q = "What is the capital of France?"
            out["chat_template_matches_gguf"] = ref.chat_prompt(q) == llm.smollm2_chat_prompt(q)
        kept = {}  # our uncached logits, for the comparison with the quantised file
        for label, text in texts.items():
            mine = ours(model, ids[label])
            kept[label] = mine["uncached"]
            theirs = ref.logits(ids[label])
            row = {
                "same_tokens_as_llama_cpp": ref.tokenize(text) == ids[label],
                "uncached": compare(mine["uncached"], theirs),
                "cached": compare(mine["cached"], theirs),
            }
            out["prompts"][label] = row
            log(
                f"{name} | {label}: {row['uncached']['tokens']} tokens, max |Δlogit| "
                f"{row['uncached']['max_abs_logit_diff']:.2e} (max |logit| "
                f"{row['uncached']['max_abs_logit']:.1f}), cached "
                f"{row['cached']['max_abs_logit_diff']:.2e}, argmax agree "
                f"{row['uncached']['argmax_agree']:.2f}, same tokens "
                f"{row['same_tokens_as_llama_cpp']}"
            )
        label = list(texts)[-1]
        theirs = ref.logits(ids[label])
        out["perturbed"] = {"prompt": label}
        for what, change in PERTURBATIONS[model.config.arch].items():
            wrong = model._replace(config=dataclasses.replace(model.config, **change))
            row = compare(ours(wrong, ids[label])["uncached"], theirs)
            out["perturbed"][what] = row["relative"]
            log(f"{name} | {label} with {what}: {row['relative']:.2e} of the largest logit")
        del ref
    if native:
        ref = Reference(gguf, n_ctx)
        for label, mine in kept.items():
            row = compare(mine, ref.logits(ids[label]))
            out["prompts"][label]["native_quantised"] = row
            log(
                f"{name} | {label}: llama.cpp on the quantised file: max |Δlogit| "
                f"{row['max_abs_logit_diff']:.2e}, argmax agree {row['argmax_agree']:.2f}"
            )
        del ref
    out["seconds"] = round(time.monotonic() - start, 1)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=pathlib.Path, default=ROOT / "results" / "assets")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args(argv)
    results = {
        "description": (
            "Our pure-JAX decoder's logits against llama.cpp's on the same GGUF weights "
            "(experiments/decoder_reference.py). 'uncached' / 'cached': our forward without / "
            "with the key-value cache against llama.cpp run on a float32 copy of the file "
            "(float32 keys and values); 'native_quantised': against llama.cpp on the original "
            "quantised file, whose CPU matmuls quantise activations to 8 bits (not asserted)."
        ),
        "tolerance": {"relative": REL_TOL, "gap_factor": GAP_FACTOR, "top_k": TOP_K},
        "dequantisation": "bit-identical (gguf-py vs llama.cpp's F32 copy, every tensor)",
        "versions": {
            p: metadata.version(p) for p in ("llama_cpp_python", "jax", "gguf", "tokenizers")
        },
        "cpu": platform.machine(),
        "models": {m: check_model(m, args.assets) for m in args.models},
    }
    for name, r in results["models"].items():
        worst = max(p["uncached"]["max_abs_logit_diff"] for p in r["prompts"].values())
        rel = max(p["uncached"]["relative"] for p in r["prompts"].values())
        r["largest_abs_logit_diff"] = worst
        r["largest_relative"] = rel
        print(f"{name}: largest |Δlogit| {worst:.3e} ({rel:.2e} of the largest logit)")
    report.write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
