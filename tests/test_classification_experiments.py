"""The classification experiments end to end on their smoke profiles, against the contract."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from experiments import classification
from experiments.harness import agreement, methods
from experiments.harness.experiment import main
from gnuq import problems

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECKER = ROOT.parent / "shared" / "tools" / "check_results.py"


@pytest.mark.parametrize("name", ["binary", "multiclass"])
def test_smoke_profile_end_to_end(tmp_path, name):
    experiment = {"binary": classification.BINARY, "multiclass": classification.MULTICLASS}[name]
    assert main(experiment, ["--profile", "smoke"], root=tmp_path) == 0
    out = tmp_path / "figures" / "smoke" / name
    data = json.loads((out / "results.json").read_text())
    assert data["experiment"] == name and data["profile"] == "smoke"
    assert data["records"] and data["diagnostics"]
    for rec in data["records"]:
        assert -1 <= rec["pearson"] <= 1 and -1 <= rec["spearman"] <= 1
        for stat in ("pearson", "spearman"):
            lo, hi = rec[f"{stat}_ci"]
            assert -1 <= lo <= hi <= 1
        assert rec["region"] in agreement.REGIONS
    robust = [
        r for r in data["records"] if agreement.ROBUST_REFERENCE in (r["reference"], r["method"])
    ]
    # the binary smoke profile's MLP (XOR) has the reference from independent MAPs, and each
    # method is compared with both references; the multiclass smoke profile leaves it out
    assert bool(robust) == (name == "binary")
    assert all(r["problem"] == "xor" for r in robust)
    found = {(r["quantity"], r["method"]) for r in data["records"] if r not in robust}
    task = "bernoulli" if name == "binary" else "categorical"
    registered = {(q, m) for q in methods.QUANTITIES for m in methods.table_columns(task, q)}
    assert (
        found
        == registered
        >= {
            ("epistemic", "GN"),
            ("epistemic", "LA"),
            ("epistemic", "GN-vs-LA"),
            ("aleatoric", "PE"),
            ("aleatoric", "LA"),
            ("aleatoric", "PE-vs-LA"),
        }
    )
    if name == "multiclass":
        assert {r["class"] for r in data["records"]} == {0, 1, 2, 3, "overall"}
    assert len(data["diagnostics"]) == 2 + (name == "binary")
    for row in data["diagnostics"]:
        # smoke chains are far too short to pass the gate whatever the draws: 2 x 60 draws cap
        # the bulk ESS at N log10 N = 250 < 400
        assert row["ok"] is False
    for stem in ("diagnostics", "claims"):
        assert (out / f"{stem}.md").exists()
    assert list(out.glob("maps_*.png")) and list(out.glob("maps_*.pdf"))
    if CHECKER.exists():
        done = subprocess.run(
            [sys.executable, str(CHECKER), str(tmp_path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout
    # a rerun reads every unit from the cache
    assert main(experiment, ["--profile", "smoke"], root=tmp_path) == 0
    assert json.loads((out / "results.json").read_text())["records"] == data["records"]


def test_the_multiclass_tables_take_their_classes_from_the_problem(tmp_path, monkeypatch):
    """A 3-class toy problem gets rows for classes 0-2 (no empty "class 3") and a decided
    per-class claim, never one marked from NaN."""
    monkeypatch.setattr(problems, "_REGISTRY", dict(problems._REGISTRY))  # leave no trace

    @problems.register("three_wedges", task="categorical", num_classes=3, box=((-2, 2), (-2, 2)))
    def _wedges(key, n):
        x = jax.random.uniform(key, (n, 2), minval=-1.5, maxval=1.5)
        angle = jnp.arctan2(x[:, 1], x[:, 0]) + jnp.pi
        return x, jnp.minimum((angle / (2 * jnp.pi / 3)).astype(int), 2)

    spec = '{name = "three_wedges", label = "Wedges (Softmax)", widths = [], n_train = 60}'
    argv = ["--profile", "smoke", "--set", f"problems=[{spec}]", "--set", "grid_resolution=8"]
    out = tmp_path / "out"
    assert main(classification.MULTICLASS, [*argv, "--out", str(out)], root=tmp_path) == 0
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["class"] for r in records} == {0, 1, 2, "overall"}
    table = (out / "table8_epistemic.md").read_text()
    assert "Wedges (Softmax) 2" in table and "Wedges (Softmax) 3" not in table
    claims = (out / "claims.md").read_text()
    assert "per-class GN correlations" in claims and "nan" not in claims
