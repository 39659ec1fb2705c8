"""The gap ledger: its rows read from Table 1's records, the width-scaled prior's
reparametrisation checked against plain gradients, and the smoke profile end to end."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gnuq
from experiments import sensitivity, sensitivity_report
from experiments.harness import config
from experiments.harness.agreement import PAPER_REFERENCE
from gnuq import models

CHECKER = pathlib.Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_results.py"


def _record(problem, quantity, method, r, rho, region="box", reference=PAPER_REFERENCE):
    return {
        "problem": problem, "model": "m", "n_params": 1, "seed": 0, "quantity": quantity,
        "method": method, "class": "overall", "pearson": r, "spearman": rho,
        "pearson_ci": [r - 0.05, min(r + 0.05, 1)],
        "spearman_ci": [rho - 0.05, min(rho + 0.05, 1)],
        "reference": reference, "region": region,
    }  # fmt: skip


def _table1(root: pathlib.Path, records: dict[str, list[dict]]) -> None:
    """Synthetic ``figures/quick/<experiment>/results.json`` under ``root``."""
    for experiment, recs in records.items():
        path = root / "figures" / "quick" / experiment / "results.json"
        path.parent.mkdir(parents=True)
        top = {"experiment": experiment, "profile": "quick", "config": {}, "git_commit": "x"}
        path.write_text(json.dumps(top | {"records": recs, "diagnostics": []}))


def test_gap_rows_are_the_rows_more_than_gap_from_the_paper_on_the_box(tmp_path):
    # paper: binary linear GN (0.95, 0.99), xor PE (0.76, 0.74), rings GN (0.86, 0.44)
    _table1(
        tmp_path,
        {
            "binary": [
                _record("linear", "epistemic", "GN", 0.93, 0.99),  # within the gap
                _record("xor", "aleatoric", "PE", 0.90, 0.80),  # r off by 0.14
                _record("xor", "aleatoric", "PE", 0.50, 0.50, region="data"),  # not the box
                _record("rings", "epistemic", "GN", 0.50, 0.50, reference="other"),  # not ours
            ]
        },
    )
    rows = sensitivity.gap_rows(sensitivity.table1_records(tmp_path, "quick"), 0.1)
    assert [(r["problem"], r["quantity"], r["method"], r["stat"]) for r in rows] == [
        ("xor", "aleatoric", "PE", "pearson")
    ]
    assert rows[0]["paper"] == 0.76


def test_width_scaled_model_is_a_reparametrisation_with_gradients_in_v():
    model = models.mlp(jax.random.key(0), 2, (5, 3), 1)
    v = sensitivity.rescale(model.params, 0.5)
    w = sensitivity.rescale(v, -0.5)
    x = jax.random.normal(jax.random.key(1), (7, 2))
    scaled = sensitivity.WidthScaled(model.apply)
    np.testing.assert_allclose(scaled(v, x), model.apply(model.params, x), rtol=1e-5, atol=1e-6)
    assert all(
        np.allclose(a, b, atol=1e-6)
        for a, b in zip(*map(jax.tree.leaves, (w, model.params)), strict=True)
    )

    def p(params, xi, f):  # the bernoulli probability of one input
        return jax.nn.sigmoid(f(params, xi[None])[0, 0])

    # ground truth: plain jax.grad in V and in W, per input
    grad_v = jax.vmap(jax.grad(lambda q, xi: p(q, xi, scaled)), (None, 0))(v, x)
    grad_w = jax.vmap(jax.grad(lambda q, xi: p(q, xi, model.apply)), (None, 0))(w, x)
    in_v = sum(jnp.sum(g.reshape(len(x), -1) ** 2, 1) for g in jax.tree.leaves(grad_v))
    in_w = sum(jnp.sum(g.reshape(len(x), -1) ** 2, 1) for g in jax.tree.leaves(grad_w))
    gn_v = gnuq.uncertainty(scaled, v, x, likelihood="bernoulli").epistemic
    gn_w = gnuq.uncertainty(model.apply, w, x, likelihood="bernoulli").epistemic
    np.testing.assert_allclose(gn_v, in_v, rtol=1e-4)
    np.testing.assert_allclose(gn_w, in_w, rtol=1e-4)
    # the paper's identity in W is the fan_in-weighted sum of the kernel gradients in V
    weighted = sum(
        (g.shape[1] if name == "kernel" else 1) * jnp.sum(g.reshape(len(x), -1) ** 2, 1)
        for layer in grad_v.values()
        for name, g in layer.items()
    )
    np.testing.assert_allclose(gn_w, weighted, rtol=1e-4)
    assert not np.allclose(gn_v, gn_w, rtol=1e-2)


def test_explanations_follow_the_numbers():
    base = {"paper": 0.8, "baseline": (0.5, 0.45, 0.55), "closest": "ReLU (box)"}
    closes = base | {"choice": "activation", "value": (0.78, 0.7, 0.85), "contains_paper": True}
    assert sensitivity_report.explain(closes, 0.1).startswith("ReLU (box) closes the gap")
    narrows = closes | {"value": (0.72, 0.7, 0.75), "contains_paper": False}
    assert "narrows it to 0.08" in sensitivity_report.explain(narrows, 0.1)
    wide = closes | {"value": (0.6, 0.3, 0.9)}
    assert "only through its wide interval" in sensitivity_report.explain(wide, 0.1)
    open_ = closes | {"value": (0.6, 0.55, 0.65), "contains_paper": False}
    assert "no setting closes it" in sensitivity_report.explain(open_, 0.1)
    assert "finding about the paper" in sensitivity_report.explain(open_, 0.1)
    partial = open_ | {"variants_planned": 10, "variants_computed": 2}
    line = sensitivity_report.explain(partial, 0.1)
    assert "finding about the paper" not in line
    assert "open so far" in line and "only 2 of 10 variants run yet" in line
    assert "unconfirmed" not in sensitivity_report.explain(closes, 0.1)
    unsure = closes | {"closest_gate": "seed 0: R-hat 1.001, ESS 6753, 14 divergent"}
    line = sensitivity_report.explain(unsure, 0.1)
    assert line.startswith("ReLU (box) closes the gap")
    assert "unconfirmed: its reference failed the gate (seed 0: R-hat 1.001" in line
    passed = {"label": "GELU (box)", "choice": "activation", "value": (0.67, 0.5, 0.8)}
    line = sensitivity_report.explain(unsure | {"closest_confirmed": passed}, 0.1)
    assert line.endswith(
        "the closest setting whose reference passed: GELU (box) (activation) "
        "0.67 [0.50, 0.80], 0.13 away"
    )


def test_nearest_names_the_closest_confirmed_setting_when_the_closest_failed_its_gate():
    def c(label, value, failed=False):
        return {"label": label, "value": (value, value - 0.1, value + 0.1), "gate_failed": failed}

    ok, bad = c("ReLU (box)", 0.67), c("GELU (box)", 0.64, failed=True)
    assert sensitivity_report.nearest([ok, bad], 0.58) == (bad, ok)
    assert sensitivity_report.nearest([ok, c("x", 0.1)], 0.58) == (ok, ok)
    assert sensitivity_report.nearest([bad], 0.58) == (bad, None)
    assert sensitivity_report.nearest([], 0.58) == (None, None)


def test_independent_note_reports_our_xor_variants_computed_not_typed():
    def xor(variant, r, rho, **kw):
        return _record("xor", "epistemic", "GN", r, rho, **kw) | {"variant": variant}

    records = [
        xor("baseline", 0.54, 0.66), xor("baseline", 0.9, 0.9, region="data"),
        xor("Adam only", 0.53, 0.61), xor("ReLU", 0.45, 0.40),
        xor("baseline", 0.2, 0.2, reference="LA"),  # against another reference: not averaged in
        _record("rings", "epistemic", "GN", 0.1, 0.2) | {"variant": "another initialisation"},
    ]  # fmt: skip
    note = sensitivity_report.independent_note(records)
    assert note.startswith(sensitivity_report.INDEPENDENT)
    assert "baseline r 0.54 [0.49, 0.59], ρ 0.66 [0.61, 0.71]" in note
    assert "Adam only r 0.53 [0.48, 0.58], ρ 0.61 [0.56, 0.66]" in note
    assert "ReLU" not in note and "another initialisation" not in note and "0.90" not in note
    assert "no XOR variant of ours has run yet" in sensitivity_report.independent_note([])


VARIANTS = (
    "variants=["
    '{name = "baseline", choice = "baseline"}, '
    '{name = "width-scaled prior", choice = "prior scale", width_scaled_prior = true}, '
    '{name = "prior x1", choice = "prior scale", prior_scale = 1.0}]'
)


@pytest.mark.filterwarnings("ignore:MCMC reference failed its gate")  # smoke chains are short
def test_smoke_profile_end_to_end(tmp_path):
    _table1(tmp_path, {"binary": [_record("linear", "epistemic", "GN", 0.70, 0.99)]})
    out = tmp_path / "figures" / "smoke" / "sensitivity"
    argv = ["--profile", "smoke", "--set", VARIANTS, "--out", str(out)]
    cfg = config.load(
        sensitivity.ROOT / "configs" / "sensitivity.toml",
        sensitivity.Config,
        "smoke",
        [VARIANTS],
    )
    plan = sensitivity.plan(cfg, tmp_path)
    # the variant that resolves to the baseline's settings shares its unit
    assert [name for _, name in plan.variants[("binary", "linear")]] == [
        "binary-linear-baseline", "binary-linear-width-scaled-prior", "binary-linear-baseline",
    ]  # fmt: skip
    assert sensitivity.main(argv, root=tmp_path) == 0

    data = json.loads((out / "results.json").read_text())
    assert data["experiment"] == "sensitivity" and data["profile"] == "smoke"
    (entry,) = data["ledger"]
    assert entry["row"] == "binary Linear epistemic (GN)" and entry["stat"] == "pearson"
    assert entry["paper"] == 0.95 and entry["table1"][0] == pytest.approx(0.70)
    assert entry["closest"] and entry["explanation"]
    variants = {r["variant"] for r in data["records"]}
    assert variants == {"baseline", "width-scaled prior", "prior x1"}
    methods = {r["method"] for r in data["records"] if r["variant"] == "width-scaled prior"}
    assert {"GN", "GN (prior metric)", "LA", "PE"} <= methods
    assert {r["region"] for r in data["records"]} == {"data", "box"}
    assert all(r["class"] == "overall" for r in data["records"])
    shared = [
        {k: r[k] for k in ("quantity", "method", "region", "pearson")}
        for r in data["records"]
        if r["variant"] in ("baseline", "prior x1")
    ]
    assert shared[: len(shared) // 2] == shared[len(shared) // 2 :]
    assert len(data["diagnostics"]) == 2  # one per unit, not per variant
    ledger = (out / "ledger.md").read_text()
    assert "| binary Linear epistemic (GN) | r | 0.95 | 0.70 [0.65, 0.75] |" in ledger
    for name in ("ledger", "variants", "diagnostics"):
        assert (out / f"{name}.md").exists() and (out / f"{name}.tex").exists()
    assert (out / "ledger.png").exists() and (out / "ledger.pdf").exists()
    if CHECKER.exists():
        done = subprocess.run(
            [sys.executable, str(CHECKER), str(tmp_path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout
    # a rerun reads every unit from the cache, and renders the same
    argv_cached = [*argv, "--set", "run_missing=false"]
    assert sensitivity.main(argv_cached, root=tmp_path) == 0
    assert json.loads((out / "results.json").read_text())["records"] == data["records"]
