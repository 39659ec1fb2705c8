"""Carry the committed LLM QA records over to the current record key, after checking a sample.

A change to the code of ``llm_qa.COMPUTING`` that leaves the numbers alone (a refactor, a split
into modules) or to the key scheme gives every record a new key, and ``python -m
experiments.llm_qa`` would ask every question again (17-20 s each; 3 268 in the paper profile).
Instead, per records file and per stored key, this recomputes ``--sample`` questions with the
current code, exactly as ``llm_qa.main`` asks them (the question's PRNG key, the per-token rule;
the first question asked is always among them, the rest drawn with a fixed seed), compares them
with the stored records and, only where every one agrees, rewrites the key of all the records
that carry that stored key:

- identical: the answer and its token count, the truncation flag, the sampled answers, the
  number of semantic clusters, the judged correctness, whether the per-token variant is there;
- within ``RTOL`` (relative): every float signal. The records may come from another CPU, whose
  XLA code sums in another order: float32's last digits differ, nothing else should.

``sq_norms.json`` is checked the same way (its stored value is kept). Prints, per file, how many
questions were recomputed and the largest relative difference of each float signal.

Run as ``python -m experiments.llm_qa_rekey --profile quick [--sample 3] [--dry-run]``
(``--set`` as for ``experiments.llm_qa``); then ``python -m experiments.llm_qa`` reuses them.
``--verify`` also checks the records already under the current key, and rewrites nothing: the
key holds no library version, so this is how a new environment (a newer jax or tokenizers,
another CPU) shows that it reproduces the committed records.
"""

import argparse
import json
import math
import sys
from collections.abc import Sequence

import numpy as np

from experiments import llm_qa, llm_qa_judge, llm_qa_report
from experiments.harness import config, report
from experiments.llm_qa_answer import Model
from experiments.llm_qa_judge import Embedder

RTOL = 1e-3  # float32 signals computed by another CPU's code: relative difference allowed
EXACT = ("answer", "answer_tokens", "truncated", "samples", "semantic_clusters", "correct")
FLOATS = (
    "epistemic",
    "aleatoric",
    "mean_token_prob",
    "greedy_mean_prob",
    "per_token_epistemic",
    "naive_entropy",
    "semantic_entropy",
    "p_true",
    "p_true_mass",
    "lexical",
    "cosine",
)


def compare(stored: dict, new: dict) -> tuple[list[str], dict[str, float]]:
    """(what disagrees, relative difference of each float signal) of two records."""
    bad = [k for k in EXACT if stored[k] != new[k]]
    diffs = {}
    for k in FLOATS:
        a, b = stored[k], new[k]
        if (a is None) != (b is None):
            bad.append(k)
        elif a is not None:
            diffs[k] = rel_diff(a, b)
            if not diffs[k] <= RTOL:
                bad.append(f"{k} ({a!r} vs {b!r})")
    return bad, diffs


def rel_diff(a: float, b: float) -> float:
    if a == b:  # also both -inf (no embeddings: no cosine)
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def sample_positions(positions: Sequence[int], count: int, seed: int) -> list[int]:
    """The first position and ``count - 1`` others drawn with ``seed``, in order."""
    first, rest = min(positions), sorted(set(positions) - {min(positions)})
    rng = np.random.default_rng(seed)
    picked = rng.choice(rest, size=min(count - 1, len(rest)), replace=False) if rest else []
    return [first, *sorted(int(p) for p in picked)]


def main(argv: Sequence[str] | None = None, root=llm_qa.ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=3, help="questions per stored key")
    parser.add_argument("--dry-run", action="store_true", help="check, but rewrite nothing")
    parser.add_argument(
        "--verify", action="store_true", help="check the current key's records too (no rewrite)"
    )
    args, rest = parser.parse_known_args(argv)
    cfg, profile, _ = config.cli(llm_qa.Config, llm_qa.ROOT / "configs" / "llm_qa.toml", rest)
    llm_qa.check(cfg)
    assets_dir = root / "results" / "assets"
    out = root / "figures" / profile / llm_qa.EXPERIMENT
    embed = Embedder(assets_dir if cfg.judge_embeddings else None)
    judge, _ = llm_qa.load_judge(root, profile, cfg, embed)
    failed = False
    for name in cfg.models:
        model = None
        for dataset in cfg.datasets:
            path = llm_qa.records_path(out, name, dataset)
            records, key = llm_qa.read_records(path), llm_qa.record_key(cfg, name, dataset)
            everything = llm_qa_judge.questions(assets_dir, dataset, 10**9, cfg.seed)
            position = {index: n for n, (index, _) in enumerate(everything, 1)}
            rows = dict(everything)
            stale = sorted({r["key"] for r in records} - (set() if args.verify else {key}))
            if not stale:
                print(f"{path.relative_to(root)}: {len(records)} records, all under key {key}")
            for old in stale:
                group = {position[r["index"]]: r for r in records if r["key"] == old}
                sample = sample_positions(list(group), args.sample, cfg.seed)
                model = model or Model(name, assets_dir)
                problems, diffs = recompute(model, cfg, group, sample, rows, embed, judge)
                verdict = "DISAGREE: " + "; ".join(problems) if problems else "agree"
                print(
                    f"{path.relative_to(root)}: {len(group)} records under key {old}, "
                    f"{len(sample)} recomputed (questions {[group[n]['index'] for n in sample]})"
                    f", {verdict}; max relative differences: "
                    + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()),
                    flush=True,
                )
                if problems:
                    failed = True
                    continue
                records = [r | {"key": key} if r["key"] == old else r for r in records]
            if stale and not (args.dry_run or args.verify):
                llm_qa.write_records(path, records)
        if model is not None:
            failed |= not check_sq_norm(out, name, model, args.dry_run)
    return 1 if failed else 0


def recompute(
    model: Model, cfg, group: dict[int, dict], sample: Sequence[int], rows: dict, embed, judge
) -> tuple[list[str], dict[str, float]]:
    """Ask the questions at positions ``sample`` of ``group`` (``{position: stored record}``)
    again: (what disagrees, the largest relative difference of each float signal)."""
    problems, diffs = [], {}
    for n in sample:
        stored = group[n]
        new = llm_qa.ask(model, cfg, n, stored["index"], rows[stored["index"]], embed, judge)
        bad, d = compare(stored, new)
        problems += [f"question {stored['index']}: {b}" for b in bad]
        for k, v in d.items():
            diffs[k] = max(diffs.get(k, 0.0), v)
    return problems, diffs


def check_sq_norm(out, name: str, model: Model, dry_run: bool) -> bool:
    """Re-key ``name``'s entry of ``sq_norms.json`` when the model's norm agrees with it."""
    path = out / "sq_norms.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    entry, key = known.get(name), llm_qa_report.sq_norm_key(name)
    if entry is None or entry["key"] == key:
        return True
    value = llm_qa_report.squared_norm(model.llm.params)
    diff = rel_diff(entry["sq_norm"], value)
    print(f"{path.name} {name}: stored {entry['sq_norm']!r}, now {value!r} (relative {diff:.1e})")
    if diff > 1e-9:
        return False
    if not dry_run:
        known[name] = entry | {"key": key}
        report.write_json(path, known)
    return True


if __name__ == "__main__":
    sys.exit(main())
