"""Rendering of the LLM QA records (part 1): answers, timings and the judge, from the per-question
records that ``experiments/llm_qa.py`` writes (outside the records' key: a change here never
re-asks a question)."""

import pathlib
from collections.abc import Sequence

import numpy as np

from gnuq import report

EXPERIMENT = "llm_qa"


SIGNALS = (
    "generation",
    "epistemic_aleatoric",
    "per_token_epistemic",
    "naive_entropy",
    "semantic_entropy",
    "p_true",
)
SUBSTITUTES = (
    "Substitutes: SmolLM2-135M-Instruct and gemma-3-270m (base) in pure JAX for the paper's 1-8B "
    "models; NQ-open for TriviaQA; a lexical/embedding judge calibrated on NQ-open's human "
    "ratings for the paper's LLM judge"
)


def render(cfg, profile: str, records: list[dict], judge: dict, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows, body, timing = [], [], []
    for name in cfg.models:
        for dataset in cfg.datasets:
            part = [r for r in records if r["model"] == name and r["dataset"] == dataset]
            base = {
                "problem": dataset,
                "model": name,
                "n_params": part[0]["n_params"],
                "class": "overall",
                "seed": cfg.seed,
            }
            accuracy = float(np.mean([r["correct"] for r in part]))
            rows.append(
                base
                | {"quantity": "accuracy", "method": "judge", "value": accuracy, "n": len(part)}
            )
            for signal in SIGNALS:
                t = [r["seconds"][signal] for r in part if signal in r["seconds"]]
                if t:
                    rows.append(
                        base
                        | {
                            "quantity": "seconds",
                            "method": signal,
                            "mean": float(np.mean(t)),
                            "sd": float(np.std(t)),
                            "n": len(t),
                        }
                    )
            body.append(
                [name, dataset, str(len(part)), f"{accuracy:.2f}"]
                + [
                    f"{np.mean([r[k] for r in part]):.3g}"
                    for k in (
                        "epistemic",
                        "aleatoric",
                        "naive_entropy",
                        "semantic_entropy",
                        "p_true",
                    )
                ]
            )
            timing.append(
                [name, dataset]
                + [_mean_sd([r["seconds"][s] for r in part if s in r["seconds"]]) for s in SIGNALS]
            )
    judge_row = {
        "problem": "nq_open_rated",
        "model": "judge",
        "n_params": 0,
        "quantity": "judge",
        "method": "lexical+cosine",
        "class": "overall",
        "seed": cfg.seed,
    } | judge
    report.write_results(out, EXPERIMENT, profile, cfg, [*rows, judge_row], [])
    header = [
        "model",
        "dataset",
        "questions",
        "accuracy (judge)",
        "mean epistemic",
        "mean aleatoric",
        "mean naive entropy",
        "mean semantic entropy",
        "mean P(True)",
    ]
    report.write_table(
        out,
        "answers",
        report.rows_table(header, body, f"Per-question records ({profile}). {SUBSTITUTES}"),
    )
    report.write_table(
        out,
        "timing",
        report.rows_table(
            ["model", "dataset", *SIGNALS],
            timing,
            f"Seconds per question on this CPU, mean ± sd ({profile}; first calls include "
            f"compilation; entropies include their {cfg.num_samples} samples). {SUBSTITUTES}",
        ),
    )
    (out / "judge.md").write_text(
        f"# Correctness judge\n\nCorrect when token F1 or containment >= {judge['f1']:.3f}, or "
        f"MiniLM cosine >= {judge['cosine']:.3f}, against any reference answer. Fitted on half "
        f"of NQ-open's human-rated predictions (definitely correct vs definitely incorrect), "
        f"{judge['n_rated']} in all; on the other half ({judge['n_held_out']} predictions, "
        f"{judge['n_correct_held_out']} correct): balanced accuracy "
        f"{judge['balanced_accuracy']:.3f}, accuracy {judge['accuracy']:.3f}.\n"
    )


def _mean_sd(values: Sequence[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "—"
