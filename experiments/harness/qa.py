"""Question answering without an LLM judge: answer matching, and the entropy baselines.

- ``token_f1``: SQuAD's token-overlap F1 after SQuAD's normalisation (lower case, no
  punctuation, no articles, single spaces), leaving out the question's own words: an answer that
  repeats the question ("New York City has fewer arrivals than ...") must not score on the words
  it shares with a reference that repeats it too; ``contains``: the normalised reference occurs
  in the normalised answer as a whole-word phrase.
- ``Judge``: an answer is correct when, against some reference, max(token F1, containment)
  reaches ``f1`` or the cosine similarity of sentence embeddings reaches ``cosine``; both
  thresholds are calibrated on human-rated predictions (``calibrate``).
- ``naive_entropy``: the length-normalised predictive entropy of Malinin & Gales, estimated
  from K sampled answers: -(1/K) sum_k (1/T_k) sum_t log p(y_kt | y_k<t, x).
- ``semantic_entropy``: the discrete semantic entropy of Farquhar et al. (2024): samples are
  clustered by meaning (an equivalence relation, here the judge applied both ways), and
  -sum_c f_c log f_c over the clusters' frequencies f_c.
"""

import collections
import math
import re
import string
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """SQuAD's answer normalisation."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def token_f1(answer: str, reference: str, ignore: frozenset[str] = frozenset()) -> float:
    """Harmonic mean of token precision and recall after ``normalize``, tokens in ``ignore``
    left out (0 when either side is then empty)."""
    a = [w for w in normalize(answer).split() if w not in ignore]
    r = [w for w in normalize(reference).split() if w not in ignore]
    common = sum((collections.Counter(a) & collections.Counter(r)).values())
    if not a or not r or common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def contains(answer: str, reference: str) -> bool:
    """Whether the normalised reference is a whole-word phrase of the normalised answer."""
    a, r = normalize(answer), normalize(reference)
    return bool(r) and f" {r} " in f" {a} "


def lexical_score(answer: str, references: Sequence[str], question: str = "") -> float:
    """max over references of max(token F1 without the question's words, 1 if contained)."""
    ignore = frozenset(normalize(question).split())
    return max(
        (max(token_f1(answer, r, ignore), float(contains(answer, r))) for r in references),
        default=0.0,
    )


class Judge(NamedTuple):
    """Thresholds of the correctness rule; ``cosine = inf`` switches the embedding test off."""

    f1: float
    cosine: float

    def __call__(self, lexical: float, cosine: float) -> bool:
        return lexical >= self.f1 or cosine >= self.cosine


def calibrate(lexical: np.ndarray, cosine: np.ndarray, correct: np.ndarray) -> tuple[Judge, float]:
    """The thresholds that maximise balanced accuracy on rated predictions, and that accuracy.

    ``lexical``, ``cosine`` [N] are the scores of N predictions against their question's
    references, ``correct`` [N] the human rating. Candidate thresholds: the scores' percentiles
    and infinity (that test off).
    """
    lexical, cosine, correct = map(np.asarray, (lexical, cosine, correct))
    if correct.all() or not correct.any():
        raise ValueError("calibration needs both correct and incorrect rated predictions")

    def candidates(v: np.ndarray) -> np.ndarray:
        v = v[np.isfinite(v)]  # -inf: a test that was not run (no embeddings)
        grid = np.unique(np.quantile(v, np.linspace(0, 1, 101))) if v.size else []
        return np.append(grid, math.inf)

    best = (Judge(math.inf, math.inf), -1.0)
    for f1 in candidates(lexical):
        for cos in candidates(cosine):
            judge = Judge(float(f1), float(cos))
            score = balanced_accuracy(judge_all(judge, lexical, cosine), correct)
            if score > best[1]:
                best = (judge, score)
    return best


def judge_all(judge: Judge, lexical: np.ndarray, cosine: np.ndarray) -> np.ndarray:
    return (np.asarray(lexical) >= judge.f1) | (np.asarray(cosine) >= judge.cosine)


def balanced_accuracy(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean of the true-positive and true-negative rates."""
    predicted, actual = np.asarray(predicted, bool), np.asarray(actual, bool)
    return float((predicted[actual].mean() + (~predicted[~actual]).mean()) / 2)


def naive_entropy(token_logprobs: Sequence[Sequence[float]]) -> float:
    """-(1/K) sum_k mean_t log p(y_kt) over K sampled answers (an empty answer, which stopped
    at once, contributes the log-probability of its stop token, so pass that one token)."""
    if not token_logprobs or any(len(lp) == 0 for lp in token_logprobs):
        raise ValueError("every sampled answer needs at least one token log-probability")
    return float(-np.mean([np.mean(lp) for lp in token_logprobs]))


def clusters(answers: Sequence[str], equivalent: Callable[[str, str], bool]) -> list[int]:
    """Cluster id of every answer: each joins the first cluster whose first member it is
    equivalent to (both ways), else opens a new one."""
    heads: list[str] = []
    ids = []
    for a in answers:
        for i, h in enumerate(heads):
            if equivalent(a, h) and equivalent(h, a):
                ids.append(i)
                break
        else:
            heads.append(a)
            ids.append(len(heads) - 1)
    return ids


def semantic_entropy(cluster_ids: Sequence[int]) -> float:
    """-sum_c f_c log f_c over the clusters' sample frequencies."""
    if not cluster_ids:
        raise ValueError("no samples")
    counts = np.bincount(np.asarray(cluster_ids))
    f = counts[counts > 0] / len(cluster_ids)
    return float(-np.sum(f * np.log(f)))
