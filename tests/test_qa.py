"""gnuq.qa against hand-computed cases: SQuAD normalisation and F1, the entropies, the judge's
calibration."""

import math

import numpy as np
import pytest

from experiments.harness import qa


def test_normalize_and_token_f1_follow_squad():
    assert qa.normalize("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    # answer tokens: william shakespeare wrote it (4); reference: william shakespeare (2);
    # 2 in common: precision 1/2, recall 1, F1 2/3
    assert qa.token_f1("William Shakespeare wrote it", "William Shakespeare") == pytest.approx(
        2 / 3
    )
    assert qa.token_f1("a", "the") == 0.0  # both normalise to nothing
    assert qa.contains("It is Paris, France.", "paris") and not qa.contains("Parisian", "paris")
    assert qa.lexical_score("I think Paris", ["Lyon", "Paris"]) == 1.0


def test_entropies_by_hand():
    # two answers with mean token log-probs -1 and -3: naive entropy 2
    assert qa.naive_entropy([[-1.0, -1.0], [-3.0]]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least one token"):
        qa.naive_entropy([[-1.0], []])
    # clusters {0, 2}, {1}, {3}: frequencies 1/2, 1/4, 1/4
    ids = qa.clusters(["paris", "lyon", "Paris!", "rome"], lambda a, b: qa.token_f1(a, b) == 1)
    assert ids == [0, 1, 0, 2]
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert qa.semantic_entropy(ids) == pytest.approx(expected)
    assert qa.semantic_entropy([0, 0, 0]) == 0.0


def test_calibration_finds_a_separating_threshold():
    lexical = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.0])
    cosine = np.full(6, -np.inf)  # no embeddings
    correct = np.array([True, True, True, False, False, False])
    judge, score = qa.calibrate(lexical, cosine, correct)
    assert score == 1.0 and 0.2 < judge.f1 <= 0.7 and judge.cosine == math.inf
    assert qa.balanced_accuracy([True, False, False], [True, True, False]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="both correct and incorrect"):
        qa.calibrate(lexical, cosine, np.ones(6, bool))


def test_words_of_the_question_do_not_count():
    question = "New York City has fewer arrivals than which cities?"
    echo = "New York City has fewer arrivals than other cities."
    reference = "New York City has fewer arrivals than Hong Kong and London"
    assert qa.token_f1(echo, reference) > 0.6  # plain F1 rewards repeating the question
    assert qa.lexical_score(echo, [reference], question) == 0.0
    assert qa.lexical_score("Hong Kong and London", [reference], question) == 1.0
