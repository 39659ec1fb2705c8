"""The classification experiments end to end on their smoke profiles, against the contract."""

import json
import pathlib
import subprocess
import sys

import pytest

from experiments import classification

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECKER = ROOT.parent / "shared" / "tools" / "check_results.py"


@pytest.mark.parametrize("config", ["binary.toml", "multiclass.toml"])
def test_smoke_profile_end_to_end(tmp_path, config):
    assert classification.main(config, ["--profile", "smoke"], root=tmp_path) == 0
    name = config.removesuffix(".toml")
    out = tmp_path / "figures" / "smoke" / name
    data = json.loads((out / "results.json").read_text())
    assert data["experiment"] == name and data["profile"] == "smoke"
    assert data["records"] and data["diagnostics"]
    for rec in data["records"]:
        assert -1 <= rec["pearson"] <= 1 and -1 <= rec["spearman"] <= 1
    methods = {(r["quantity"], r["method"]) for r in data["records"]}
    assert methods == {
        ("epistemic", "GN"),
        ("epistemic", "LA"),
        ("epistemic", "GN-vs-LA"),
        ("aleatoric", "PE"),
        ("aleatoric", "LA"),
        ("aleatoric", "PE-vs-LA"),
    }
    if name == "multiclass":
        assert {r["class"] for r in data["records"]} == {0, 1, 2, 3, "overall"}
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
    assert classification.main(config, ["--profile", "smoke"], root=tmp_path) == 0
    assert json.loads((out / "results.json").read_text())["records"] == data["records"]
