"""One question of the LLM QA experiment (paper Sec. 4.2, App. G): the greedy answer and every
signal of a record (the list is in ``experiments/llm_qa.py``), with the model's jitted functions
loaded once (``Model``).
"""

import pathlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from experiments.harness import assets, qa
from experiments.llm_qa_judge import Embedder, scores
from gnuq import sequence_uncertainty
from gnuq.pretrained import decoder, generation, llm

if TYPE_CHECKING:
    from experiments.llm_qa import Config

TRUE, FALSE = ("True", " True"), ("False", " False")
ONE_SENTENCE = "Answer the following question in a single brief but complete sentence."


class Model:
    """A loaded LLM with the jitted functions each question reuses (one compilation per bucket)."""

    def __init__(self, name: str, assets_dir: pathlib.Path):
        arch = name.removeprefix("tiny-")
        self.llm = llm.tiny(arch) if name.startswith("tiny-") else assets.load_llm(name, assets_dir)
        self.params = jax.tree.map(jnp.asarray, self.llm.params)
        self.apply = decoder.language_model(self.llm.config)
        self.n_params = decoder.num_params(self.params)
        apply = self.apply
        self.next_logits = jax.jit(lambda p, t, n: apply(p, t[None])[0, n - 1])
        tok = self.llm.tokenizer
        self.true_ids = _single_tokens(tok, TRUE)
        self.false_ids = _single_tokens(tok, FALSE)

    def encode(self, prompt: str) -> list[int]:
        return self.llm.tokenizer.encode(prompt).ids

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.llm.tokenizer.decode(list(ids)).split())

    def generate(
        self, prompt_ids: list[int], key, temperature: float, num: int, max_new_tokens: int
    ) -> list[tuple[list[int], list[float]]]:
        """``num`` continuations of the prompt: (token ids, their log-probabilities)."""
        padded, length = generation.bucketed(prompt_ids)
        tokens = jnp.broadcast_to(padded, (num, padded.size))
        gen = generation.generate(
            self.params,
            tokens,
            key,
            self.llm.config,
            max_new_tokens,
            self.llm.stop_ids + self.llm.end_ids,
            float(temperature),
            length=length,
        )
        out, lengths, logprobs = map(np.asarray, gen)
        return [
            (out[i, : lengths[i]].tolist(), logprobs[i, : lengths[i]].tolist()) for i in range(num)
        ]


def _single_tokens(tokenizer, words: Sequence[str]) -> list[int]:
    ids = [tokenizer.encode(w, add_special_tokens=False).ids for w in words]
    return sorted({i[0] for i in ids if len(i) == 1})


def question_prompt(model: Model, question: str) -> str:
    """The chat model is asked for one sentence (the paper's instruction to its chat models; its
    answer also ends at the first sentence end), the base model sees three Q/A examples."""
    if model.llm.config.arch == "llama":
        return llm.smollm2_chat_prompt(f"{ONE_SENTENCE}\nQuestion: {question}")
    return llm.few_shot_prompt(question)


def p_true_prompt(model: Model, question: str, answer: str) -> str:
    ask = f"Question: {question}\nProposed answer: {answer}\nIs the proposed answer true or false?"
    if model.llm.config.arch == "llama":
        return llm.smollm2_chat_prompt(ask + " Answer True or False.")
    return f"{ask}\nAnswer:"


def answer_question(
    model: Model, row: dict, key, cfg: "Config", embed: Embedder, judge, per_token: bool
) -> dict:
    """The record of the question ``row`` (its signals, correctness and timings): greedy answer
    and P(True) from the key's first half, the entropies' samples from its second."""
    stop = set(model.llm.stop_ids)
    prompt_ids = model.encode(question_prompt(model, row["question"]))
    k_greedy, k_sample = jax.random.split(key)
    seconds = {}

    start = time.monotonic()
    [(greedy, greedy_lp)] = model.generate(prompt_ids, k_greedy, 0.0, 1, cfg.max_new_tokens)
    seconds["generation"] = time.monotonic() - start
    answer_ids = [t for t in greedy if t not in stop] or greedy  # empty answer: its stop token
    ended = bool(set(greedy) & (stop | set(model.llm.end_ids)))
    answer = model.decode([t for t in greedy if t not in stop])

    start = time.monotonic()
    tokens, mask = _with_answer(prompt_ids, answer_ids)
    seq = sequence_uncertainty(model.apply, model.params, tokens, mask)
    epistemic, aleatoric, p_bar = (float(v[0]) for v in seq[:3])
    seconds["epistemic_aleatoric"] = time.monotonic() - start
    per_token_epistemic = None
    if per_token:
        start = time.monotonic()
        pt = sequence_uncertainty(model.apply, model.params, tokens, mask, per_token=True)
        per_token_epistemic = float(pt.epistemic[0])
        seconds["per_token_epistemic"] = time.monotonic() - start

    start = time.monotonic()
    samples = model.generate(
        prompt_ids, k_sample, cfg.temperature, cfg.num_samples, cfg.max_new_tokens
    )
    naive = qa.naive_entropy([lp for _, lp in samples])
    seconds["naive_entropy"] = time.monotonic() - start
    start = time.monotonic()
    texts = [model.decode([t for t in s if t not in stop]) for s, _ in samples]
    emb = embed(texts)

    def equivalent(i: int, j: int) -> bool:
        if qa.normalize(texts[i]) == qa.normalize(texts[j]):  # also two empty answers
            return True
        cos = float(emb[i] @ emb[j]) if emb is not None else -np.inf
        return judge(qa.lexical_score(texts[i], [texts[j]], row["question"]), cos)

    ids = qa.clusters(range(len(texts)), equivalent)
    semantic = qa.semantic_entropy(ids)
    seconds["semantic_entropy"] = seconds["naive_entropy"] + time.monotonic() - start

    start = time.monotonic()
    asked = model.encode(p_true_prompt(model, row["question"], answer))
    padded, length = generation.bucketed(asked)
    probs = np.asarray(jax.nn.softmax(model.next_logits(model.params, padded, length)))
    yes, no = float(probs[model.true_ids].sum()), float(probs[model.false_ids].sum())
    p_true = yes / (yes + no) if yes + no > 0 else 0.5
    seconds["p_true"] = time.monotonic() - start

    lexical, cosine = scores(embed, [answer], [row["answer"]], [row["question"]])
    return {
        "question": row["question"],
        "references": row["answer"],
        "answer": answer,
        "answer_tokens": len(answer_ids),
        "truncated": not ended,  # cut at max_new_tokens, not ended by the model
        "greedy_mean_prob": float(np.mean(np.exp(greedy_lp[: len(answer_ids)]))),
        "epistemic": epistemic,
        "aleatoric": aleatoric,
        "mean_token_prob": p_bar,
        "per_token_epistemic": per_token_epistemic,
        "naive_entropy": naive,
        "semantic_entropy": semantic,
        "semantic_clusters": int(max(ids) + 1),
        "samples": texts,
        "p_true": p_true,
        "p_true_mass": yes + no,
        "lexical": float(lexical[0]),
        "cosine": float(cosine[0]),
        "correct": bool(judge(float(lexical[0]), float(cosine[0]))),
        "seconds": seconds,
    }


def _with_answer(prompt_ids: list[int], answer_ids: list[int]):
    """Prompt + answer padded to a bucket, and the mask of the answer positions."""
    padded, _ = generation.bucketed(prompt_ids + answer_ids)
    mask = np.zeros(padded.size, np.int32)
    mask[len(prompt_ids) : len(prompt_ids) + len(answer_ids)] = 1
    return padded[None], jnp.asarray(mask)[None]
