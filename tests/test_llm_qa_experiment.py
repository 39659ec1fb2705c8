"""The LLM question-answering experiment end to end on its smoke profile: a tiny random decoder
(gnuq.llm.tiny) and fake data wheels (tests/conftest.py), through every signal and the judge."""

import json
import math

import pytest

from experiments import llm_qa
from experiments.harness import config

SMOKE = ["--profile", "smoke", "--set", 'models=["tiny-gemma3"]']


def test_smoke_records_every_signal_and_resumes(text_assets):
    root = text_assets
    assert llm_qa.main(SMOKE, root=root) == 0
    out = root / "figures" / "smoke" / "llm_qa"
    records = _records(out)
    assert len(records) == 4 and {r["dataset"] for r in records} == {"truthfulqa", "nq_open"}
    for r in records:
        for key in ("epistemic", "aleatoric", "naive_entropy", "semantic_entropy", "p_true"):
            assert math.isfinite(r[key]), key
        assert r["epistemic"] > 0 and 0 < r["aleatoric"] <= 0.25 and 0 <= r["p_true"] <= 1
        assert 1 <= r["semantic_clusters"] <= 3 and len(r["samples"]) == 3
        # the KV-cached generation and the uncached forward of the gradient agree on p_bar
        assert r["greedy_mean_prob"] == pytest.approx(r["mean_token_prob"], rel=1e-4)
        assert set(r["seconds"]) >= {"generation", "epistemic_aleatoric", "p_true"}
    assert sum(r["per_token_epistemic"] is not None for r in records) == 2  # 1 per dataset
    data = json.loads((out / "results.json").read_text())
    (judge,) = [r for r in data["records"] if r["quantity"] == "judge"]
    assert 0 <= judge["balanced_accuracy"] <= 1
    for name in ("answers.md", "timing.md", "judge.md"):
        assert "TriviaQA" in (out / name).read_text() or name == "judge.md"
    # part 2 renders every table, the figure and the claims, even where the tiny random model's
    # answers leave an AUROC undefined (then the cell is "—" and the row says why)
    for name in ("table2", "table11", "table12", "table13", "lift", "table14", "table15"):
        assert "TriviaQA" in (out / f"{name}.md").read_text(), name
    assert (out / "auroc.png").stat().st_size > 0 and (out / "claims.md").exists()
    for row in (r for r in data["records"] if r["quantity"] == "auroc"):
        assert "undefined" in row or 0 <= row["mean"] <= 1
    # a rerun reads every record from the cache; asking for more questions continues them
    assert llm_qa.main(SMOKE, root=root) == 0
    assert _records(out) == records
    assert llm_qa.main([*SMOKE, "--set", "questions=3"], root=root) == 0
    more = _records(out)
    old = {(r["dataset"], r["index"]) for r in records}
    assert len(more) == 6 and [m for m in more if (m["dataset"], m["index"]) in old] == records
    # a record computed by other code (another key) is asked again, the others are kept
    path = out / "records" / "tiny-gemma3-nq_open.jsonl"
    lines = path.read_text().splitlines()
    stale = json.loads(lines[0]) | {"key": "other", "answer": "stale"}
    path.write_text("\n".join([json.dumps(stale), *lines[1:]]) + "\n")
    assert llm_qa.main([*SMOKE, "--set", "questions=3"], root=root) == 0
    assert _untimed(_records(out)) == _untimed(more)  # recomputed to the same numbers


def _untimed(records: list[dict]) -> list[dict]:
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    return sorted(rows, key=lambda r: (r["dataset"], r["index"]))


def _records(out) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((out / "records").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_judge_calibration_separates_the_rated_predictions(text_assets):
    embed = llm_qa.Embedder(None)  # lexical only
    info = llm_qa.calibrate_judge(text_assets / "results" / "assets", embed, seed=0)
    assert info["n_rated"] == 9 and 0.5 <= info["balanced_accuracy"] <= 1


def test_bad_settings_are_named():
    base = config.load(llm_qa.ROOT / "configs" / "llm_qa.toml", llm_qa.Config, "smoke")
    with pytest.raises(config.ConfigError, match="unknown datasets"):
        llm_qa.check(llm_qa.Config(**{**base.__dict__, "datasets": ("triviaqa",)}))
    with pytest.raises(config.ConfigError, match="unknown models"):
        llm_qa.check(llm_qa.Config(**{**base.__dict__, "models": ("gpt-5",)}))
