"""`make reproduce`'s guarantees on the binary experiment's smoke profile (NUTS, MAP, Laplace,
maps): a run killed mid-way and started again (its finished unit's cache damaged) ends with the
results files of an uninterrupted run, byte for byte; the gallery and Table 1 are built from
the results; a toy problem registered by a user runs through the experiment."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from experiments import gallery
from experiments.classification import BINARY
from experiments.harness.experiment import main
from gnuq import problems

ROOT = pathlib.Path(__file__).resolve().parent.parent
# two units (seeds) of the cheapest problem keep a run near 20 s and give a kill a mid-point
ARGS = [
    "--profile",
    "smoke",
    "--set",
    "seeds=[0, 1]",
    "--set",
    'problems=[{name = "linear", label = "Linear (LogReg)", widths = [], n_train = 40}]',
    "--set",
    "grid_resolution=8",
    "--set",
    "mcmc.num_warmup=40",
    "--set",
    "mcmc.num_samples=40",
]
RUN = (
    "import pathlib, sys\n"
    "from experiments.classification import BINARY\n"
    "from experiments.harness.experiment import main\n"
    "sys.exit(main(BINARY, sys.argv[2:], root=pathlib.Path(sys.argv[1])))"
)


def _start(root: pathlib.Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(root), *ARGS, "--out", str(_out(root))],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def _out(root: pathlib.Path) -> pathlib.Path:
    return root / "figures" / "smoke" / "binary"


def _results(root: pathlib.Path) -> dict:
    data = json.loads((_out(root) / "results.json").read_text())
    return {k: v for k, v in data.items() if k != "git_commit"}


def _units(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted((root / "results" / "smoke" / "binary").glob("linear-seed*.npz"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    _finish(_start(root))
    return root


def test_killed_run_resumes_to_the_uninterrupted_numbers(uninterrupted, tmp_path):
    proc = _start(tmp_path)
    seen = []
    for line in proc.stdout:  # read as it runs, so the pipe never fills
        seen.append(line)
        if "[binary smoke 2/2] linear seed 1: MAP" in line:  # unit 2's NUTS is next: kill
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    (done,) = _units(tmp_path)  # unit 1 cached, unit 2 lost in flight
    assert "seed0" in done.name
    # a cache file damaged on disk is reported and recomputed, not read
    done.write_bytes(done.read_bytes()[:100])
    out = _finish(_start(tmp_path))
    assert "unreadable" in out and "recomputing" in out, out
    assert len(_units(tmp_path)) == 2
    # both units were computed again in a fresh process: the run gives identical files
    assert _results(tmp_path) == _results(uninterrupted)
    for name in ("table5.md", "table6.md", "diagnostics.md", "claims.md"):
        a = (tmp_path / "figures" / "smoke" / "binary" / name).read_text()
        assert a == (uninterrupted / "figures" / "smoke" / "binary" / name).read_text(), name


def test_gallery_and_table1_from_the_smoke_results(uninterrupted):
    page = gallery.gallery(uninterrupted, "smoke")
    assert page == uninterrupted / "figures" / "smoke" / "README.md"
    text = page.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((page.parent / link).exists() for link in links)
    assert "## binary" in text and any(f"**{v}**" in text for v in gallery.VERDICTS)
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in (uninterrupted / "figures" / "smoke" / "table1.md").read_text().splitlines()
        if line.startswith("| binary | Linear")
    ]
    assert len(rows) == 3
    for cells in rows:  # ours on the data region and the box, then the paper's, for r and rho
        _, _, _, r_data, r_box, paper_r, rho_data, rho_box, paper_rho = cells
        for ours in (r_data, r_box, rho_data, rho_box):
            assert re.match(r"-?\d\.\d\d \[-?\d\.\d\d, -?\d\.\d\d\]", ours), ours
        assert re.fullmatch(r"\d\.\d\d", paper_r) and re.fullmatch(r"\d\.\d\d", paper_rho)


def test_missing_results_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        gallery.gallery(tmp_path, "smoke")


def test_a_registered_toy_problem_runs_through_the_binary_experiment(tmp_path, monkeypatch):
    monkeypatch.setattr(problems, "_REGISTRY", dict(problems._REGISTRY))  # leave no trace

    @problems.register("reproduce_stripes", task="bernoulli", box=((-2, 2), (-2, 2)))
    def _stripes(key, n, width=0.75):
        x = jax.random.uniform(key, (n, 2), minval=-1.5, maxval=1.5)
        return x, (jnp.floor(x[:, 0] / width) % 2).astype(int)

    spec = '{name = "reproduce_stripes", label = "Stripes (LogReg)", widths = [], n_train = 40}'
    argv = ["--profile", "smoke", "--set", f"problems=[{spec}]", "--set", "grid_resolution=8"]
    assert main(BINARY, argv, root=tmp_path) == 0
    # a user's settings never write into the committed figures/: results/custom instead
    assert not (tmp_path / "figures").exists()
    out = tmp_path / "results" / "custom" / "smoke" / "binary"
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["problem"] for r in records} == {"reproduce_stripes"}
    assert (out / "maps_reproduce_stripes.png").exists()
    assert "Stripes (LogReg)" in (out / "table5.md").read_text()
