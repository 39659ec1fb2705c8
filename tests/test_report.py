"""Tables: our numbers in our columns, the paper's only in the 'paper' columns."""

import numpy as np

from experiments.harness import agreement, plots, report
from experiments.harness.paper_values import paper_value


def _records(value):
    return [
        {
            "problem": "xor",
            "model": "m",
            "n_params": 1,
            "quantity": "epistemic",
            "method": m,
            "class": "overall",
            "seed": s,
            "pearson": value + s / 100,
            "spearman": value,
            "pearson_ci": [value - 0.1, value + 0.1],
            "spearman_ci": [value - 0.1, value + 0.1],
            "reference": "LA" if m == "GN-vs-LA" else agreement.PAPER_REFERENCE,
            "region": region,
        }
        for m in ("GN", "LA", "GN-vs-LA")
        for s in (0, 1, 2)
        for region in agreement.REGIONS
    ]


def test_paper_numbers_only_in_paper_columns():
    md, tex = report.correlation_table(
        _records(0.123),
        experiment="binary",
        quantity="epistemic",
        methods=("GN", "LA", "GN-vs-LA"),
        rows=[("xor", "XOR (MLP)", "overall")],
        caption="t",
    )
    header, _, *rows = [line for line in md.splitlines() if line.startswith("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert len(rows) == len(agreement.REGIONS)  # one row per evaluation region
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(columns) == len(cells) == 14
        for column, cell in zip(columns, cells, strict=True):
            if column == "paper":
                assert "0.12" not in cell and "0.13" not in cell
            elif column not in ("problem", "region"):
                # the seed mean and its t interval: 0.133 +- 4.30 * 0.01 / sqrt(3)
                assert cell in ("0.13 [0.11, 0.16]", "0.12 [0.12, 0.12]"), cell
    paper_cells = [c for col, c in zip(columns, cells, strict=True) if col == "paper"]
    expected = [
        paper_value("binary", "xor", "epistemic", m, "overall") for m in ("GN", "LA", "GN-vs-LA")
    ]
    assert paper_cells == [f"{v:.2f}" for pair in expected for v in pair]
    assert r"\begin{tabular}" in tex and "0.65" in tex


def test_missing_paper_value_is_a_dash_and_normalise():
    md, _ = report.correlation_table(
        _records(0.5),
        experiment="binary",
        quantity="epistemic",
        methods=("GN",),
        rows=[("spirals", "nowhere", "overall")],
        caption="t",
    )
    assert "| nowhere | data | — | — | — | — |" in md
    np.testing.assert_allclose(plots.normalise([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    assert np.all(plots.normalise([1.0, 1.0]) == 0)
