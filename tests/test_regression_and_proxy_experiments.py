"""Regression and proxy-bias experiments end to end on their smoke profiles."""

import json
import math
import pathlib
import subprocess
import sys

from experiments import proxy_bias, regression
from experiments.harness import agreement, methods
from experiments.harness.experiment import main

CHECKER = pathlib.Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_results.py"


def _check_contract(root: pathlib.Path) -> None:
    if CHECKER.exists():
        done = subprocess.run(
            [sys.executable, str(CHECKER), str(root)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout


def test_regression_smoke(tmp_path):
    assert main(regression.EXPERIMENT, ["--profile", "smoke"], root=tmp_path) == 0
    out = tmp_path / "figures" / "smoke" / "regression"
    data = json.loads((out / "results.json").read_text())
    # every registered method for a Gaussian likelihood, and each against GN; the MLP also
    # against the reference from independent MAPs, which is compared with the MAP-started one
    robust = agreement.ROBUST_REFERENCE
    assert {r["problem"] for r in data["records"] if robust in (r["reference"], r["method"])} == {
        "nonlinear_1d"
    }
    assert (
        {r["method"] for r in data["records"] if r["method"] != robust}
        == set(methods.table_columns("gaussian", "epistemic"))
        >= {"GN", "LA", "GN-vs-LA"}
    )
    assert all(-1 <= r["pearson"] <= 1 and -1 <= r["spearman"] <= 1 for r in data["records"])
    assert len(data["diagnostics"]) == 3  # two problems, and the MLP's robust reference
    for row in data["spectra"]:
        assert 0 < row["min"] <= row["max"] and math.isfinite(row["ratio"])
    assert (out / "bands.png").exists() and (out / "table9.md").exists()
    _check_contract(tmp_path)


def test_proxy_bias_smoke(tmp_path):
    assert main(proxy_bias.EXPERIMENT, ["--profile", "smoke"], root=tmp_path) == 0
    out = tmp_path / "figures" / "smoke" / "proxy_bias"
    data = json.loads((out / "results.json").read_text())
    ratios = [r for r in data["records"] if r["quantity"] == "symmetry_ratio"]
    assert {r["method"] for r in ratios} == {"I", "A", "B"}
    assert all(math.isfinite(r["value"]) and r["value"] > 0 for r in ratios)
    tests = [r for r in data["records"] if r["quantity"] == "log_ratio_test"]
    assert len(tests) == 3 and all(0 <= r["p"] <= 1 and math.isfinite(r["t"]) for r in tests)
    assert len(list(out.glob("maps_*.png"))) == 3 and (out / "table3.md").exists()
    _check_contract(tmp_path)
