"""Part 2 of the LLM QA experiment's rendering: Tables 2, 11-15 and the AUROC figure from the
statistics' rows (``experiments/llm_qa_stats.py``) of ``results.json``, with the paper's values
beside ours where they survived. Outside the records' key: a change here never re-asks a
question.
"""

import pathlib
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from experiments import llm_qa_stats as qs
from experiments.harness import plots, report
from experiments.harness.paper_values import paper_value

EXPERIMENT = "llm_qa"
SUBSTITUTES = (
    "Substitutes: SmolLM2-135M-Instruct and gemma-3-270m (base) in pure JAX for the paper's 1-8B "
    "models; NQ-open for TriviaQA; a lexical/embedding judge calibrated on NQ-open's human "
    "ratings for the paper's LLM judge"
)

LABELS = {
    "naive_entropy": "Naïve Ent.",
    "semantic_entropy": "Sem. Ent.",
    "p_true": "P(True)",
    "aleatoric": "Aleatoric",
    "epistemic": "Epistemic",
    "epi_alea": "Epi. & Alea.",
}
DATASET_LABELS = {"truthfulqa": "TruthfulQA", "nq_open": "NQ-open (for TriviaQA)"}
PAPER_DATASETS = {"truthfulqa": "truthfulqa", "nq_open": "triviaqa"}
FEW_POSITIVES = 20  # below this many correct (or wrong) answers the AUROCs are noted as fragile
# Below this many correct (or wrong) answers a model's AUROC is marked untestable on the figure's
# face: each held-out 20 % then holds at most 2 answers of that class (round(0.2 n), at least 1),
# so a split's AUROC is the rank of one or two answers among the rest, and even on all answers
# the AUROC's sd under no signal, sqrt((n0 + n1 + 1) / (12 n0 n1)) (Mann-Whitney), exceeds 0.1
# (50 questions): no value in the figure's range could be told apart from chance.
UNTESTABLE_BELOW = 10


def pick(rows: Sequence[dict], quantity: str, **match) -> list[dict]:
    return [
        r for r in rows if r["quantity"] == quantity and all(r[k] == v for k, v in match.items())
    ]


def one(rows: Sequence[dict], quantity: str, **match) -> dict | None:
    found = pick(rows, quantity, **match)
    if len(found) > 1:
        raise ValueError(f"{len(found)} {quantity} rows match {match}: a cell needs one")
    return found[0] if found else None


def _arrow(difference: float) -> str:
    return "↑" if difference > 0 else "↓" if difference < 0 else "="


def p_cell(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _auroc_cell(row: dict | None) -> str:
    if row is None or "undefined" in row:
        return "—"
    return f"{row['mean']:.2f} ± {row['sd']:.2f}"


def fragile_note(rows: Sequence[dict]) -> str:
    small = [
        f"{r['model']} {r['problem']}: {r['n_correct']} of {r['n']}"
        for r in pick(rows, "auroc", method="epistemic")
        if r["model"] != qs.MEAN and min(r["n_correct"], r["n"] - r["n_correct"]) < FEW_POSITIVES
    ]
    if not small:
        return ""
    return (
        f" Few correct answers ({'; '.join(small)}): with so few positives a held-out split "
        "often removes the ones that set the fitted sign, so AUROCs scatter widely and can sit "
        "well below 0.5."
    )


def write_part2_tables(cfg, profile: str, rows: list[dict], seconds: list[dict], out) -> None:
    datasets = cfg.datasets
    protocol = (
        f"held-out AUROC of a logistic regression on the score(s), mean ± sd over "
        f"{qs.BOOTSTRAP_SPLITS} random 80/20 splits ({profile})"
    )
    note = fragile_note(rows)
    # Table 2: the mean over models, beside the paper's (only one of its cells survived)
    header = ["method"]
    for d in datasets:
        header += [DATASET_LABELS[d], f"paper ({'TriviaQA' if d == 'nq_open' else 'TruthfulQA'})"]
    body = []
    for method in qs.METHODS:
        line = [LABELS[method]]
        for d in datasets:
            paper = paper_value(EXPERIMENT, PAPER_DATASETS[d], "auroc", method, "overall")
            line += [
                _auroc_cell(one(rows, "auroc", problem=d, model=qs.MEAN, method=method)),
                "—" if paper is None else f"{paper[0]:.2f}",
            ]
        body.append(line)
    caption = (
        f"Table 2: {protocol}, averaged over our {len(cfg.models)} models. The paper averages "
        f"four 1-8B models; extraction lost all its values but one.{note} {SUBSTITUTES}"
    )
    report.write_table(out, "table2", report.rows_table(header, body, caption))

    # Table 11: per model
    body = []
    for d in datasets:
        for model in cfg.models:
            line = [DATASET_LABELS[d], model]
            line += [
                _auroc_cell(one(rows, "auroc", problem=d, model=model, method=m))
                for m in qs.METHODS
            ]
            r = one(rows, "auroc", problem=d, model=model, method="epistemic")
            body.append([*line, f"{r['n_correct']} / {r['n']}"])
    caption = (
        f"Table 11: per model, {protocol}. The paper's per-model values (other models) were lost "
        f"in extraction.{note} {SUBSTITUTES}"
    )
    header = ["dataset", "model", *(LABELS[m] for m in qs.METHODS), "correct"]
    report.write_table(out, "table11", report.rows_table(header, body, caption))

    # Table 12: seconds per question of each method, the shared greedy generation excluded
    columns = {
        "epistemic_aleatoric": "Gradient norm (ours: epistemic + aleatoric)",
        "p_true": "P(True)",
        "naive_entropy": "Naïve Ent.",
        "semantic_entropy": "Sem. Ent.",
    }
    body = []
    for d in datasets:
        for model in cfg.models:
            cells = {
                signal: one(seconds, "seconds", problem=d, model=model, method=signal)
                for signal in columns
            }
            line = [model, DATASET_LABELS[d]]
            line += [
                "—" if r is None else f"{r['mean']:.2f} ± {r['sd']:.2f} ({r['median']:.2f})"
                for r in cells.values()
            ]
            grad = cells["epistemic_aleatoric"]
            fastest = min(
                (r["median"] for k, r in cells.items() if k != "epistemic_aleatoric" and r),
                default=None,
            )
            ratio = "—" if grad is None or fastest is None else f"{fastest / grad['median']:.2f}"
            body.append([*line, ratio])
    caption = (
        f"Table 12: seconds per question on this CPU (2 cores), mean ± sd (median), the shared "
        f"greedy generation excluded as in the paper ({profile}; first calls include "
        f"compilation; the entropies include sampling their {cfg.num_samples} answers, "
        f"semantic entropy also the clustering). Last column: the fastest baseline's median "
        f"over the gradient's (above 1: ours is faster). The paper timed its models on an "
        f"H100; its values were lost. {SUBSTITUTES}"
    )
    header = ["model", "dataset", *columns.values(), "fastest baseline / gradient"]
    report.write_table(out, "table12", report.rows_table(header, body, caption))

    # Table 13: BH-corrected tests of each gradient-based method against each baseline, by the
    # paper's split protocol and by the test over questions; and the lift of the epistemic term
    tests = {
        "table13": (
            "paired_t",
            f"Table 13 (the paper's protocol): paired t-tests over {qs.TEST_SPLITS} random 80/20 "
            f"splits, each method's AUROC averaged over models within a split. The splits share "
            f"their questions, so these p-values are anti-conservative; table13_questions tests "
            f"over questions.",
        ),
        "table13_questions": (
            "question_test",
            f"Table 13 by a test over questions: each question scored out of fold ({qs.FOLDS}-"
            f"fold cross-fitting), the model-averaged AUROC difference and its stratified "
            f"bootstrap over questions, cross-fitted again in each of {qs.QUESTION_RESAMPLES} "
            f"resamples (two-sided p; conservative where a score is noise); — "
            f"where a model has fewer than {qs.FOLDS} correct or wrong answers on the dataset.",
        ),
    }
    for name, (quantity, what) in tests.items():
        body = []
        for d in datasets:
            for grad in qs.GRADIENT:
                line = [DATASET_LABELS[d], LABELS[grad]]
                for baseline in qs.BASELINES:
                    r = one(rows, quantity, problem=d, method=grad, baseline=baseline)
                    if r is None:
                        line.append("—")
                        continue
                    cell = f"{p_cell(r['p_bh'])} {_arrow(r['difference'])} ({r['difference']:+.2f})"
                    line.append(f"**{cell}**" if r["p_bh"] < 0.05 else cell)
                body.append(line)
        count = len(pick(rows, quantity))
        caption = (
            f"{what} Benjamini-Hochberg-adjusted p over all {count} tests; ↑/↓ the gradient-"
            f"based method better/worse, in brackets the AUROC difference; bold: adjusted p < "
            f"0.05 ({profile}). The paper's values were lost. {SUBSTITUTES}"
        )
        header = ["dataset", "method", *(f"vs {LABELS[b]}" for b in qs.BASELINES)]
        report.write_table(out, name, report.rows_table(header, body, caption))
    body = [
        [
            DATASET_LABELS[r["problem"]],
            {"splits": "(model, split) pairs", "questions": "questions"}[r["test"]],
            f"{r.get('mean', r.get('difference')):+.3f}",
            f"[{r['lo']:+.3f}, {r['hi']:+.3f}]",
            f"{r['p']:.4f}",  # at least 2 / (resamples + 1): never 0
        ]
        for r in pick(rows, "lift")
    ]
    caption = (
        f"Lift of Epi. & Alea. over Aleatoric (AUROC difference, averaged over models) with a "
        f"95 % percentile interval and two-sided p: the paper's paired bootstrap over the "
        f"(model, split) pairs of Table 13 ({qs.LIFT_RESAMPLES} resamples; anti-conservative, "
        f"as the splits share their questions), and the bootstrap over questions of "
        f"table13_questions ({profile}). {SUBSTITUTES}"
    )
    header = ["dataset", "resampled", "lift", "95 % CI", "p"]
    report.write_table(out, "lift", report.rows_table(header, body, caption))

    # Table 14: Spearman between the epistemic estimate and P(True)
    body = []
    for r in pick(rows, "spearman_epistemic_p_true"):
        stat = (
            ["—", r["undefined"]]
            if "undefined" in r
            else [f"{r['rho']:+.3f}", report.p_value_cell(r["p"])]
        )
        body.append([r["model"], DATASET_LABELS[r["problem"]], str(r["n"]), *stat])
    caption = (
        f"Table 14: Spearman's ρ between the epistemic estimate and P(True) per question, per "
        f"model, and pooled over models on within-model ranks (raw gradient norms differ ~100x "
        f"between models) ({profile}). The paper finds every correlation negative, significant "
        f"and weak; its values were lost. {SUBSTITUTES}"
    )
    header = ["model", "dataset", "n", "ρ", "p"]
    report.write_table(out, "table14", report.rows_table(header, body, caption))

    # Table 15: leave one model out
    body = []
    for d in datasets:
        for model in [*cfg.models, qs.MEAN]:
            line = [DATASET_LABELS[d], model]
            for features in qs.TRANSFER:
                r = one(rows, "transfer_auroc", problem=d, model=model, method=features)
                if r is None or "undefined" in r:
                    line.append("—")
                elif model == qs.MEAN:
                    line.append(f"{r['mean']:.2f} ({r['sd']:.2f})")
                else:
                    line.append(f"{r['auroc']:.2f}")
            body.append(line)
    caption = (
        f"Table 15: cross-model transfer, the correctness classifier fitted on the other "
        f"model's records and scored (AUROC) on the held-out one; mean (sd) over held-out "
        f"models ({profile}). Normalized: epistemic / ||θ||². With two models a classifier "
        f"is trained on one, so a single feature's AUROC is the same raw or normalized (a "
        f"positive rescaling) and is either the held-out model's own AUROC or one minus it, "
        f"by the sign learned on the other model; the paper trains on three of four. Its "
        f"values were lost. "
        f"{SUBSTITUTES}"
    )
    header = ["dataset", "held-out model", "Raw", "Normalized", "Raw & Alea.", "Norm & Alea."]
    report.write_table(out, "table15", report.rows_table(header, body, caption))


def untestable(rows: Sequence[dict], dataset: str, models: Sequence[str]) -> dict[str, str]:
    """``{model: why}`` for the models whose AUROC on ``dataset`` is untestable: fewer than
    ``UNTESTABLE_BELOW`` correct or wrong answers (the mean over models when any model is)."""
    out = {}
    for model in models:
        r = one(rows, "auroc", problem=dataset, model=model, method="epistemic")
        if r is not None and min(r["n_correct"], r["n"] - r["n_correct"]) < UNTESTABLE_BELOW:
            out[model] = f"{r['n_correct']} of {r['n']} correct"
    if out:
        out[qs.MEAN] = "averages an untestable model"
    return out


def auroc_figure(cfg, profile: str, rows: list[dict], stem: pathlib.Path) -> None:
    """Held-out AUROC per method, one panel per dataset: each model and the mean over models,
    bars at the mean, whiskers over the central 95 % of the splits; the paper's surviving value
    as a star. A model with fewer than ``UNTESTABLE_BELOW`` correct (or wrong) answers has its
    bars hatched and pale and is named in its panel as untestable, as is the mean over models
    that includes it."""
    series = [*cfg.models, qs.MEAN]
    fig, axes = plt.subplots(
        1, len(cfg.datasets), figsize=(5.5 * len(cfg.datasets), 3.9), squeeze=False
    )
    width = 0.8 / len(series)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    any_untestable = False
    for ax, d in zip(axes[0], cfg.datasets, strict=True):
        weak = untestable(rows, d, cfg.models)
        any_untestable |= bool(weak)
        for i, model in enumerate(series):
            x, mean, err = [], [], [[], []]
            for j, method in enumerate(qs.METHODS):
                r = one(rows, "auroc", problem=d, model=model, method=method)
                if r is None or "undefined" in r:
                    continue
                x.append(j + (i - (len(series) - 1) / 2) * width)
                mean.append(r["mean"])
                err[0].append(r["mean"] - r["lo"])
                err[1].append(r["hi"] - r["mean"])
            style = {"hatch": "///", "alpha": 0.4, "edgecolor": "black"} if model in weak else {}
            ax.bar(
                x, mean, width, yerr=err, capsize=2, label=model, color=colors[i % len(colors)],
                **({"alpha": 0.85} | style),
            )  # fmt: skip
        for j, method in enumerate(qs.METHODS):
            paper = paper_value(EXPERIMENT, PAPER_DATASETS[d], "auroc", method, "overall")
            if paper is not None:
                ax.plot(j, paper[0], "k*", ms=10, label="paper (4-model mean)")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(qs.METHODS)), [LABELS[m] for m in qs.METHODS], fontsize=8)
        ax.set_ylim(0, 1.2 if weak else 1)  # headroom above 1 for the note
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("held-out AUROC")
        title = DATASET_LABELS[d]
        if weak:
            title += " — hatched: UNTESTABLE at this size"
            named = "; ".join(f"{m}: {why}" for m, why in weak.items() if m != qs.MEAN)
            ax.text(
                0.99, 0.98, f"untestable (< {UNTESTABLE_BELOW} correct or wrong)\n{named}",
                transform=ax.transAxes, ha="right", va="top", fontsize=7, color="darkred",
                bbox={"facecolor": "white", "edgecolor": "darkred", "alpha": 0.9},
            )  # fmt: skip
        ax.set_title(title, fontsize=10, color="darkred" if weak else "black")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    head = (
        f"Predicting answer correctness ({profile}; {qs.BOOTSTRAP_SPLITS} 80/20 splits; "
        f"whiskers: central 95 %)"
    )
    if any_untestable:
        head += (
            f"\nHatched bars: fewer than {UNTESTABLE_BELOW} correct (or wrong) answers, so a "
            "held-out fold holds 1-2 of them: those AUROCs cannot be told from chance"
        )
    fig.suptitle(head, fontsize=10, color="darkred" if any_untestable else "black")
    fig.tight_layout()
    plots.save_figure(fig, stem)
