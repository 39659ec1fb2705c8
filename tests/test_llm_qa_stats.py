"""Part 2 of the LLM QA experiment (experiments/llm_qa_stats.py) on synthetic records whose
ground truth is known: which score predicts correctness, and how strongly."""

import numpy as np
import pytest
from scipy import stats
from test_detection import auroc_sd, logistic_link_auroc

from experiments import llm_qa_stats as qs

# These records are one random data set, so every assertion on a number from them holds with a
# margin of several of its standard errors, or, for a test of no difference, a stated rate of
# false alarms; none is fitted to these draws.

MODELS = ("model-a", "model-b")
DATASETS = ("truthfulqa", "nq_open")
SQ_NORMS = {"model-a": 4.0, "model-b": 400.0}
# A test over questions of no difference, between scores that are noise: p > 0.05 would fail a
# calibrated test one data set in twenty, but there the refitting bootstrap is conservative
# (tests/test_detection.py; simulated with 60 questions: p < 0.05 in 0.1 % of data sets for one
# noise feature against another, 0.0 % for a 2-feature method against its own noise feature).
NULL_P = 0.05


def _records(n: int = 120, seed: int = 0) -> list[dict]:
    """On truthfulqa correctness follows the epistemic score (a logistic link, population AUROC
    0.90), on nq_open it follows P(True); every other score is noise. model-b's epistemic is
    100x model-a's, as gradient norms differ between architectures."""
    rng = np.random.default_rng(seed)
    out = []
    for m, model in enumerate(MODELS):
        for dataset in DATASETS:
            z = rng.normal(size=n)
            correct = rng.random(n) < 1 / (1 + np.exp(-2.5 * z))
            epi = np.exp(z if dataset == "truthfulqa" else rng.normal(size=n)) * 100**m
            p_true = 1 / (1 + np.exp(-(z if dataset == "nq_open" else rng.normal(size=n))))
            for i in range(n):
                out.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "n_params": 10 * (m + 1),
                        "correct": bool(correct[i]),
                        "epistemic": float(epi[i]),
                        "aleatoric": float(rng.uniform(0, 0.25)),
                        "naive_entropy": float(rng.uniform(0, 3)),
                        "semantic_entropy": float(rng.uniform(0, 1.6)),
                        "p_true": float(p_true[i]),
                    }
                )
    return out


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return qs.all_rows(_records(), MODELS, DATASETS, SQ_NORMS, seed=0)


def _get(rows, quantity, **match):
    return [
        r for r in rows if r["quantity"] == quantity and all(r[k] == v for k, v in match.items())
    ]


def test_aurocs_find_the_informative_score(rows):
    aurocs = _get(rows, "auroc")
    assert len(aurocs) == len(DATASETS) * len(qs.METHODS) * (len(MODELS) + 1)
    for r in aurocs:
        assert 0 <= r["lo"] <= r["mean"] <= r["hi"] <= 1 and r["splits"] == qs.BOOTSTRAP_SPLITS
    mean = {(r["problem"], r["method"]): r["mean"] for r in _get(rows, "auroc", model=qs.MEAN)}
    # the informative scores: population AUROC 0.90; the mean over 2 models of AUROCs with sd
    # 0.03 each (Hanley-McNeil, n = 120) lies > 6 sd above 0.7
    assert logistic_link_auroc(2.5) > 0.89
    assert mean[("truthfulqa", "epistemic")] > 0.7 and mean[("truthfulqa", "epi_alea")] > 0.7
    assert mean[("nq_open", "p_true")] > 0.7
    # noise: each model's split mean scatters about 0.5 with ~1.25x the null sd of a full-sample
    # AUROC (tests/test_stats.py); 5 null sd of the mean over models is about 4 of its sd
    for method in ("naive_entropy", "semantic_entropy", "aleatoric"):
        per_model = _get(rows, "auroc", problem="truthfulqa", method=method)
        sds = [
            auroc_sd(0.5, r["n_correct"], r["n"] - r["n_correct"])
            for r in per_model
            if r["model"] != qs.MEAN
        ]
        tolerance = 5 * np.sqrt(np.sum(np.square(sds))) / len(sds)
        assert abs(mean[("truthfulqa", method)] - 0.5) < tolerance, (method, tolerance)
    # the mean over models is the run-by-run mean of the per-model AUROCs
    per_model = [
        r["mean"]
        for r in _get(rows, "auroc", problem="nq_open", method="p_true")
        if r["model"] != qs.MEAN
    ]
    assert mean[("nq_open", "p_true")] == pytest.approx(np.mean(per_model))


def test_significance_tests_are_bh_adjusted_and_directed(rows):
    tests = _get(rows, "paired_t")
    assert len(tests) == 18  # 3 gradient methods x 3 baselines x 2 datasets
    p = np.array([r["p"] for r in tests])
    p_bh = np.array([r["p_bh"] for r in tests])
    assert np.all(p_bh >= p - 1e-15) and np.all(p_bh <= 1)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(p_bh[order]) >= -1e-15)  # monotone in the rank of p
    (epi_vs_naive,) = [
        r
        for r in _get(rows, "paired_t", problem="truthfulqa", method="epistemic")
        if r["baseline"] == "naive_entropy"
    ]
    assert epi_vs_naive["difference"] > 0.15 and epi_vs_naive["p_bh"] < 0.05
    (alea_vs_p_true,) = [
        r
        for r in _get(rows, "paired_t", problem="nq_open", method="aleatoric")
        if r["baseline"] == "p_true"
    ]
    assert alea_vs_p_true["difference"] < -0.15 and alea_vs_p_true["p_bh"] < 0.05
    lift = {(r["problem"], r["test"]): r for r in _get(rows, "lift")}
    assert lift[("truthfulqa", "splits")]["pairs"] == len(MODELS) * qs.TEST_SPLITS
    # aleatoric is noise everywhere: adding the informative epistemic score lifts on truthfulqa,
    # by either test
    for test in ("splits", "questions"):
        assert lift[("truthfulqa", test)]["lo"] > 0 and lift[("truthfulqa", test)]["p"] < 0.05
    # noise added to noise (NULL_P)
    assert lift[("nq_open", "questions")]["p"] > NULL_P


def test_the_question_level_test_sees_real_differences_only(rows):
    tests = _get(rows, "question_test")
    assert len(tests) == 18
    p = np.array([r["p"] for r in tests])
    p_bh = np.array([r["p_bh"] for r in tests])
    assert np.all(p_bh >= p - 1e-15) and np.all(p >= 2 / (qs.QUESTION_RESAMPLES + 1))
    by = {(r["problem"], r["method"], r["baseline"]): r for r in tests}
    # epistemic carries the truthfulqa signal, P(True) the nq_open one; the rest is noise
    for baseline in qs.BASELINES:
        r = by[("truthfulqa", "epistemic", baseline)]
        assert r["difference"] > 0.15 and r["lo"] > 0 and r["p_bh"] < 0.05
    r = by[("nq_open", "aleatoric", "p_true")]
    assert r["difference"] < -0.15 and r["hi"] < 0 and r["p_bh"] < 0.05
    for baseline in ("naive_entropy", "semantic_entropy"):  # noise against noise
        assert by[("truthfulqa", "aleatoric", baseline)]["p_bh"] > NULL_P


def test_spearman_per_model_and_pooled_within_model():
    """Per model it is scipy's rho; pooled, the models' 100x apart epistemic scales must not
    decide it: two models each with rho = -1 pool to rho = -1 on within-model ranks, where the
    raw values would pool to nearly 0."""
    records = _records()
    rows = qs.spearman_rows(
        qs.groups(records, MODELS, DATASETS, SQ_NORMS), MODELS, DATASETS, seed=0
    )
    for r in rows:
        if r["model"] == qs.POOLED:
            continue
        part = [x for x in records if x["dataset"] == r["problem"] and x["model"] == r["model"]]
        rho, p = stats.spearmanr([x["epistemic"] for x in part], [x["p_true"] for x in part])
        assert (r["rho"], r["p"], r["n"]) == pytest.approx((rho, p, len(part)))
    for x in records:  # P(True) now falls exactly as the epistemic score rises, per model
        x["p_true"] = 1 / (1 + x["epistemic"] / 100 ** MODELS.index(x["model"]))
    gs = qs.groups(records, MODELS, DATASETS, SQ_NORMS)
    pooled = [r for r in qs.spearman_rows(gs, MODELS, DATASETS, 0) if r["model"] == qs.POOLED]
    assert [r["n"] for r in pooled] == [240, 240]
    assert all(r["rho"] == pytest.approx(-1.0) for r in pooled)


def test_transfer_scores_the_held_out_model(rows):
    held = [r for r in _get(rows, "transfer_auroc") if r["model"] != qs.MEAN]
    assert len(held) == len(DATASETS) * len(qs.TRANSFER) * len(MODELS)
    for r in held:
        assert 0 <= r["auroc"] <= 1 and r["trained_on"] == [m for m in MODELS if m != r["model"]]
    # one training model: a single feature's AUROC is the same raw or normalized
    for d in DATASETS:
        for m in MODELS:
            raw = _get(rows, "transfer_auroc", problem=d, model=m, method="raw")[0]["auroc"]
            norm = _get(rows, "transfer_auroc", problem=d, model=m, method="normalized")[0]
            assert norm["auroc"] == pytest.approx(raw)
    # on truthfulqa the sign of the epistemic link transfers even across a 100x scale
    truthful = _get(rows, "transfer_auroc", problem="truthfulqa", model=qs.MEAN, method="raw")
    assert truthful[0]["mean"] > 0.7


def test_too_few_correct_answers_give_reasons_not_numbers():
    records = _records(n=30)
    for r in records:
        if r["model"] == "model-a" and r["dataset"] == "nq_open":
            r["correct"] = False
    records[[r["model"] == "model-a" and r["dataset"] == "nq_open" for r in records].index(True)][
        "correct"
    ] = True
    rows = qs.all_rows(records, MODELS, DATASETS, SQ_NORMS, seed=0)
    bad = _get(rows, "auroc", problem="nq_open", model="model-a")
    assert all("1 correct of 30" in r["undefined"] for r in bad)
    assert all("undefined" in r for r in _get(rows, "auroc", problem="nq_open", model=qs.MEAN))
    assert _get(rows, "paired_t", problem="nq_open") == []  # no test without every model
    assert len(_get(rows, "paired_t", problem="truthfulqa")) == 9
    assert all("mean" in r for r in _get(rows, "auroc", problem="truthfulqa"))


def test_claims_are_marked_from_the_numbers(rows):
    from types import SimpleNamespace

    from experiments import llm_qa_claims

    cfg = SimpleNamespace(models=MODELS, datasets=DATASETS)
    seconds = [
        {"quantity": "seconds", "problem": "truthfulqa", "model": m, "method": k, "median": v}
        for m in MODELS
        for k, v in (("epistemic_aleatoric", 1.0), ("p_true", 0.2), ("naive_entropy", 1.5))
    ]
    lines = llm_qa_claims.check_claims(cfg, rows, seconds)
    claims = [line for line in lines if line.startswith("- **")]
    verdicts = ("**holds**", "**fails**", "**inconclusive**", "**untestable**")
    assert len(claims) == 9 and all(any(v in c for v in verdicts) for c in claims)

    def find(text: str) -> str:
        (line,) = [c for c in claims if text in c]
        return line

    assert "**holds**" in find("P(True) has the highest mean AUROC")  # nq_open's signal
    # two models: each transfer fit sees one model only, so the claim cannot be tested
    assert "**untestable**" in find("cross-model transfer")
    faster = find("estimates are faster per question")
    assert "**fails**" in faster and "0.20" in faster  # P(True) takes a fifth of the time
    # with few correct answers nothing is claimed either way
    few = qs.all_rows(_records(n=30), MODELS, DATASETS, SQ_NORMS, seed=0)
    lines = llm_qa_claims.check_claims(cfg, few, seconds)
    assert "**untestable**" in lines[-1] and not any(
        "**holds**" in x or "**fails**" in x for x in lines
    )


def test_bad_records_are_named():
    records = _records(n=10)
    records[3]["epistemic"] = float("nan")
    with pytest.raises(ValueError, match="epistemic holds NaN"):
        qs.all_rows(records, MODELS, DATASETS, SQ_NORMS, seed=0)
    with pytest.raises(ValueError, match="no records for model-c"):
        qs.all_rows(_records(n=10), ("model-c",), DATASETS, SQ_NORMS, seed=0)


def test_untestable_aurocs_are_named_on_the_figure(tmp_path):
    from types import SimpleNamespace

    from experiments import llm_qa_tables as qt

    records = _records(n=60)
    few = [r for r in records if r["model"] == "model-b" and r["dataset"] == "nq_open"]
    for i, r in enumerate(few):  # 4 correct of 60: below the rule's 10
        r["correct"] = i < 4
    rows = qs.all_rows(records, MODELS, DATASETS, SQ_NORMS, seed=0)
    assert qt.untestable(rows, "nq_open", MODELS) == {
        "model-b": "4 of 60 correct",
        qs.MEAN: "averages an untestable model",
    }
    truthful = _get(rows, "auroc", problem="truthfulqa", model="model-a", method="epistemic")[0]
    assert min(truthful["n_correct"], 60 - truthful["n_correct"]) >= qt.UNTESTABLE_BELOW
    assert qt.untestable(rows, "truthfulqa", MODELS) == {}
    cfg = SimpleNamespace(models=MODELS, datasets=DATASETS)
    qt.auroc_figure(cfg, "test", rows, tmp_path / "auroc")
    assert (tmp_path / "auroc.png").stat().st_size > 0
