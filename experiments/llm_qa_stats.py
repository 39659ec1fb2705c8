"""LLM question answering, part 2 (paper Sec. 4.2, App. G.5-G.9): how well each signal predicts
answer correctness, from part 1's per-question records (``experiments/llm_qa.py``).

The paper's protocol:
- per method, model and dataset, a logistic regression predicts correctness from the method's
  score (Epi. & Alea.: from both scores, a two-feature model) and is scored by its AUROC on the
  held-out 20 % of 300 random 80/20 splits (stratified): mean, sd and the 2.5-97.5 % range
  (Tables 2, 11);
- paired t-tests over the first 10 of those splits, each method's AUROC averaged over the models
  within a split, the 3 gradient-based methods against the 3 baselines on both datasets (18
  tests), p-values corrected by Benjamini-Hochberg (Table 13); a paired bootstrap (10 000
  resamples of the (model, split) pairs) of the lift of Epi. & Alea. over Aleatoric;
- Spearman correlation between the epistemic estimate and P(True) (Table 14);
- cross-model transfer: the classifier fitted on the other model(s) and scored on the held-out
  one, the epistemic estimate raw and divided by the squared parameter norm (Table 15).

The splits share their questions, so the split-level tests measure the noise of re-splitting one
sample, not of drawing the questions: they are anti-conservative (in a null simulation with 50
questions a t-test at 5 % rejected about a third of the time). Beside them, the same comparisons
by a test over questions (``question_rows``): the difference of out-of-fold AUROCs (5-fold
cross-fitting of the same logistic regression), and 2 000 stratified bootstrap resamples of the
questions in each of which the cross-fitting is done again (folds dealt to the distinct
questions drawn), paired across methods, independent across models.

That test used to resample fixed out-of-fold scores, which leaves out the variability of the
fit (a weak feature's fitted slope changes size and sign between samples). In null simulations
(60 questions, 1 000 data sets, 500 resamples) it rejected at 5 % in 12.7 % of data sets (one
noise feature against another), 12.2 % (a 2-feature method against its own second feature, both
noise), 8.9 % (an informative feature and a noise one against the informative one alone) and
7.4 % (two features of equal skill, population AUROC 0.71); binomial SE 0.8-1.1 %. Refitting:
0.1 %, 0.0 %, 0.0 % and 4.1 % (SE 0.6 %): calibrated where the methods have skill, conservative
where a feature is noise (the fit picks its sign or weight from noise, a choice the bootstrap
overstates). Power, an informative feature (AUROC 0.81) against noise with 100 questions: 97 %
of data sets, as before. About 1.1 s a method and group of 817 questions: 27 s for the paper's
records (5 s before).

Every function returns tidy rows for results.json. Where the data cannot support a statistic
(fewer than 2 correct or 2 wrong answers, a constant score) the row says why instead of holding
a number.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats as scipy_stats

from gnuq import detection

METHODS = {  # method -> the record fields that are its features
    "naive_entropy": ("naive_entropy",),
    "semantic_entropy": ("semantic_entropy",),
    "p_true": ("p_true",),
    "aleatoric": ("aleatoric",),
    "epistemic": ("epistemic",),
    "epi_alea": ("epistemic", "aleatoric"),
}
GRADIENT = ("aleatoric", "epistemic", "epi_alea")
BASELINES = ("naive_entropy", "semantic_entropy", "p_true")
TRANSFER = {  # Table 15's feature sets; "normalized" is epistemic / ||theta||^2
    "raw": ("epistemic",),
    "normalized": ("normalized",),
    "raw_alea": ("epistemic", "aleatoric"),
    "norm_alea": ("normalized", "aleatoric"),
}
BOOTSTRAP_SPLITS = 300
TEST_SPLITS = 10  # the first of the BOOTSTRAP_SPLITS
LIFT_RESAMPLES = 10_000
FOLDS = 5  # out-of-fold scores for the test over questions
QUESTION_RESAMPLES = 2_000
MEAN = "mean over models"
POOLED = "pooled"


class Group(NamedTuple):
    """One model's records on one dataset, as arrays."""

    model: str
    dataset: str
    n_params: int
    correct: np.ndarray  # [N] bool
    scores: dict[str, np.ndarray]  # record field -> [N]

    def features(self, fields: Sequence[str]) -> np.ndarray:
        return np.column_stack([self.scores[f] for f in fields])


def groups(
    records: Sequence[dict],
    models: Sequence[str],
    datasets: Sequence[str],
    sq_norms: dict[str, float],
) -> dict[tuple[str, str], Group]:
    """The records by (model, dataset); ``sq_norms``: each model's squared parameter norm."""
    out = {}
    for model in models:
        for dataset in datasets:
            part = [r for r in records if r["model"] == model and r["dataset"] == dataset]
            if not part:
                raise ValueError(f"no records for {model} on {dataset}")
            fields = {f for fs in METHODS.values() for f in fs}
            scores = {f: np.array([r[f] for r in part], np.float64) for f in fields}
            for f, v in scores.items():
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"{model} {dataset}: {f} holds NaN or inf")
            scores["normalized"] = scores["epistemic"] / sq_norms[model]
            if not all(isinstance(r["correct"], bool) for r in part):
                raise ValueError(f"{model} {dataset}: 'correct' must be true or false")
            correct = np.array([r["correct"] for r in part], bool)
            out[(model, dataset)] = Group(model, dataset, part[0]["n_params"], correct, scores)
    return out


def _base(dataset: str, model: str, n_params, seed: int) -> dict:
    return {
        "problem": dataset,
        "model": model,
        "n_params": n_params,
        "class": "overall",
        "seed": seed,
    }


def _why_undefined(group: Group) -> str:
    return f"{int(group.correct.sum())} correct of {group.correct.size}: each class needs 2"


def split_runs(
    gs: dict[tuple[str, str], Group], count: int, seed: int
) -> dict[tuple[str, str, str], np.ndarray | None]:
    """``[count]`` held-out AUROCs per (model, dataset, method), every method of a group on the
    same splits (paired); None where a class has fewer than 2 members."""
    out = {}
    for (model, dataset), g in gs.items():
        try:
            splits = detection.random_splits(g.correct, count, seed)
        except ValueError:
            splits = None
        for method, fields in METHODS.items():
            out[(model, dataset, method)] = (
                None
                if splits is None
                else detection.split_aurocs(g.features(fields), g.correct, splits)
            )
    return out


def auroc_rows(
    gs: dict[tuple[str, str], Group],
    runs: dict[tuple[str, str, str], np.ndarray | None],
    models: Sequence[str],
    datasets: Sequence[str],
    seed: int,
) -> list[dict]:
    """Tables 2 and 11: per model (and the mean over models, split by split) the held-out AUROC
    over the ``split_runs``: mean, sd and the central 95 % range."""
    rows = []
    for dataset in datasets:
        for method in METHODS:
            per_model = [runs[(m, dataset, method)] for m in models]
            for model, r in zip(models, per_model, strict=True):
                g = gs[(model, dataset)]
                head = _base(dataset, model, g.n_params, seed) | {
                    "quantity": "auroc",
                    "method": method,
                    "n": int(g.correct.size),
                    "n_correct": int(g.correct.sum()),
                }
                rows.append(
                    head | (_summary(r) if r is not None else {"undefined": _why_undefined(g)})
                )
            head = _base(dataset, MEAN, None, seed) | {"quantity": "auroc", "method": method}
            if all(r is not None for r in per_model):
                rows.append(head | _summary(np.mean(per_model, axis=0)))
            else:
                rows.append(head | {"undefined": "a model's AUROC is undefined"})
    return rows


def _summary(runs: np.ndarray) -> dict:
    lo, hi = np.quantile(runs, [0.025, 0.975])
    return {
        "mean": float(runs.mean()),
        "sd": float(runs.std(ddof=1)),
        "lo": float(lo),
        "hi": float(hi),
        "splits": int(runs.size),
    }


def significance_rows(
    runs: dict[tuple[str, str, str], np.ndarray | None],
    models: Sequence[str],
    datasets: Sequence[str],
    seed: int,
) -> list[dict]:
    """Table 13 by the paper's protocol: paired t-tests over the first ``TEST_SPLITS`` splits of
    the model-averaged AUROC, BH over all tests; and the paired bootstrap of the lift of Epi. &
    Alea. over Aleatoric on the (model, split) pairs."""
    tests, rows = [], []
    for dataset in datasets:
        per = {method: [runs[(m, dataset, method)] for m in models] for method in METHODS}
        if any(r is None for v in per.values() for r in v):
            continue
        mean = {method: np.mean(v, axis=0)[:TEST_SPLITS] for method, v in per.items()}
        for grad in GRADIENT:
            for baseline in BASELINES:
                diff = mean[grad] - mean[baseline]
                if np.ptp(diff) == 0:  # a constant difference: t is undefined
                    t, p = None, 1.0 if diff[0] == 0 else 0.0
                else:
                    t, p = (float(v) for v in scipy_stats.ttest_rel(mean[grad], mean[baseline]))
                tests.append((dataset, grad, baseline, float(diff.mean()), t, p))
        lift = np.concatenate(
            [(a - b)[:TEST_SPLITS] for a, b in zip(per["epi_alea"], per["aleatoric"], strict=True)]
        )
        d, lo, hi, p = detection.paired_bootstrap(lift, LIFT_RESAMPLES, seed)
        rows.append(
            _base(dataset, MEAN, None, seed)
            | {"quantity": "lift", "method": "epi_alea - aleatoric", "test": "splits"}
            | {"mean": d, "lo": lo, "hi": hi, "p": p, "pairs": int(lift.size)}
            | {"resamples": LIFT_RESAMPLES}
        )
    adjusted = detection.benjamini_hochberg([t[-1] for t in tests]) if tests else []
    for (dataset, grad, baseline, diff, t, p), p_bh in zip(tests, adjusted, strict=True):
        rows.append(
            _base(dataset, MEAN, None, seed)
            | {"quantity": "paired_t", "method": grad, "baseline": baseline, "difference": diff}
            | {"t": t, "p": p, "p_bh": float(p_bh), "splits": TEST_SPLITS, "tests": len(tests)}
        )
    return rows


def question_rows(
    gs: dict[tuple[str, str], Group], models: Sequence[str], datasets: Sequence[str], seed: int
) -> list[dict]:
    """The comparisons of Table 13 and the lift by a test over questions: the model-averaged
    difference of out-of-fold AUROCs on the full sample, and its stratified bootstrap over
    questions with the cross-fitting redone in every resample (95 % percentile interval,
    two-sided p), BH over the 18 tests of Table 13."""
    tests, rows = [], []
    for dataset in datasets:
        part = [gs[(m, dataset)] for m in models]
        if any(min(g.correct.sum(), (~g.correct).sum()) < FOLDS for g in part):
            continue
        full, draws = {}, {}
        for method, fields in METHODS.items():
            per_model_full, per_model_draws = [], []
            for i, g in enumerate(part):
                x = g.features(fields)
                oof = detection.out_of_fold_scores(x, g.correct, FOLDS, seed)
                per_model_full.append(detection.auroc(oof, g.correct))
                # the same resamples and folds for every method of a model (paired), other
                # ones for each model (independent)
                per_model_draws.append(
                    detection.refit_bootstrap_aurocs(
                        x, g.correct, FOLDS, QUESTION_RESAMPLES, (seed, i)
                    )
                )
            full[method] = float(np.mean(per_model_full))
            draws[method] = np.mean(per_model_draws, axis=0)
        pairs = [(g, b) for g in GRADIENT for b in BASELINES] + [("epi_alea", "aleatoric")]
        for grad, baseline in pairs:
            d = draws[grad] - draws[baseline]
            lo, hi = np.quantile(d, [0.025, 0.975])
            p = detection.bootstrap_p(d) if np.any(d) else 1.0
            tests.append(
                (dataset, grad, baseline, full[grad] - full[baseline], float(lo), float(hi), p)
            )
    family = [i for i, t in enumerate(tests) if t[2] != "aleatoric"]  # the 18 of Table 13
    adjusted = (
        dict(zip(family, detection.benjamini_hochberg([tests[i][-1] for i in family]), strict=True))
        if family
        else {}
    )
    for i, (dataset, grad, baseline, diff, lo, hi, p) in enumerate(tests):
        row = _base(dataset, MEAN, None, seed) | {"method": grad, "baseline": baseline}
        row |= {"difference": diff, "lo": lo, "hi": hi, "p": p}
        row |= {"resamples": QUESTION_RESAMPLES, "folds": FOLDS}
        if i in adjusted:
            rows.append(row | {"quantity": "question_test", "p_bh": float(adjusted[i])})
        else:
            rows.append(row | {"quantity": "lift", "test": "questions"})
    return rows


def spearman_rows(
    gs: dict[tuple[str, str], Group], models: Sequence[str], datasets: Sequence[str], seed: int
) -> list[dict]:
    """Table 14: Spearman's rho between the epistemic estimate and P(True), per model, and
    pooled over models on within-model ranks (raw gradient norms differ ~100x between models,
    so pooling raw values would mostly rank the models)."""
    rows = []
    for dataset in datasets:
        parts = [gs[(m, dataset)] for m in models]
        for model, part in [(m, [g]) for m, g in zip(models, parts, strict=True)] + [
            (POOLED, parts)
        ]:
            epi = np.concatenate(
                [scipy_stats.rankdata(g.scores["epistemic"]) / g.correct.size for g in part]
            )
            p_true = np.concatenate(
                [scipy_stats.rankdata(g.scores["p_true"]) / g.correct.size for g in part]
            )
            head = _base(dataset, model, part[0].n_params if len(part) == 1 else None, seed) | {
                "quantity": "spearman_epistemic_p_true",
                "method": "epistemic vs p_true",
                "n": int(epi.size),
            }
            if np.ptp(epi) == 0 or np.ptp(p_true) == 0:
                rows.append(head | {"undefined": "a constant score"})
                continue
            rho, p = scipy_stats.spearmanr(epi, p_true)
            rows.append(head | {"rho": float(rho), "p": float(p)})
    return rows


def transfer_rows(
    gs: dict[tuple[str, str], Group], models: Sequence[str], datasets: Sequence[str], seed: int
) -> list[dict]:
    """Table 15: leave one model out. A logistic regression fitted on the other models' records
    (pooled) scores the held-out model's; its AUROC there, then mean and sd over held-out
    models."""
    rows = []
    for dataset in datasets:
        for features, fields in TRANSFER.items():
            values = []
            for held in models:
                test = gs[(held, dataset)]
                train = [gs[(m, dataset)] for m in models if m != held]
                head = _base(dataset, held, test.n_params, seed) | {
                    "quantity": "transfer_auroc",
                    "method": features,
                    "trained_on": [g.model for g in train],
                }
                if not train:
                    rows.append(head | {"undefined": "no other model to train on"})
                    continue
                y = np.concatenate([g.correct for g in train])
                if len(set(y)) < 2 or len(set(test.correct)) < 2:
                    rows.append(head | {"undefined": "a class is missing on one side"})
                    continue
                w = detection.logistic_fit(np.vstack([g.features(fields) for g in train]), y)
                score = detection.logistic_scores(w, test.features(fields))
                values.append(detection.auroc(score, test.correct))
                rows.append(head | {"auroc": values[-1], "n": int(test.correct.size)})
            head = _base(dataset, MEAN, None, seed) | {"quantity": "transfer_auroc"}
            if len(values) == len(models) > 1:
                rows.append(
                    head
                    | {"method": features, "mean": float(np.mean(values))}
                    | {"sd": float(np.std(values, ddof=1))}
                )
            else:
                rows.append(head | {"method": features, "undefined": "a held-out model failed"})
    return rows


def all_rows(
    records: Sequence[dict],
    models: Sequence[str],
    datasets: Sequence[str],
    sq_norms: dict[str, float],
    seed: int,
) -> list[dict]:
    """Every statistic of part 2, tidy rows."""
    gs = groups(records, models, datasets, sq_norms)
    runs = split_runs(gs, BOOTSTRAP_SPLITS, seed)
    return [
        *auroc_rows(gs, runs, models, datasets, seed),
        *significance_rows(runs, models, datasets, seed),
        *question_rows(gs, models, datasets, seed),
        *spearman_rows(gs, models, datasets, seed),
        *transfer_rows(gs, models, datasets, seed),
    ]
