"""The shape every experiment shares: where outputs go, a failed run that leaves them intact,
settings refused before anything is computed, and a command line that documents itself."""

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments import classification, proxy_bias, regression, scaling
from experiments.harness import config, methods
from experiments.harness.experiment import Experiment, main, output_dir, publish


def test_a_failed_rendering_leaves_the_previous_outputs(tmp_path):
    out = tmp_path / "figures" / "quick" / "binary"
    out.mkdir(parents=True)
    (out / "results.json").write_text("previous")

    def broken(scratch: pathlib.Path) -> list[str]:
        (scratch / "results.json").write_text("half")
        raise RuntimeError("rendering failed")

    with pytest.raises(RuntimeError, match="rendering failed"):
        publish(out, broken)
    assert (out / "results.json").read_text() == "previous"
    assert [p.name for p in out.parent.iterdir()] == ["binary"]  # no scratch left behind

    def fine(scratch: pathlib.Path) -> list[str]:
        (scratch / "results.json").write_text("new")
        (scratch / "sub").mkdir()
        (scratch / "sub" / "x.md").write_text("x")
        return ["claims"]

    assert publish(out, fine) == ["claims"]
    assert (out / "results.json").read_text() == "new" and (out / "sub" / "x.md").exists()


def test_outputs_go_to_figures_only_for_the_profile_as_committed(tmp_path):
    _, _, plain = config.cli(regression.Config, config_path("regression"), ["--profile", "smoke"])
    assert output_dir(tmp_path, "smoke", "regression", plain) == (
        tmp_path / "figures" / "smoke" / "regression"
    )
    for extra in (["--set", "seeds=[3]"], ["--import", "json"]):
        _, _, args = config.cli(
            regression.Config, config_path("regression"), ["--profile", "smoke", *extra]
        )
        assert output_dir(tmp_path, "smoke", "regression", args) == (
            tmp_path / "results" / "custom" / "smoke" / "regression"
        )
    _, _, args = config.cli(
        regression.Config, config_path("regression"), ["--out", str(tmp_path / "mine")]
    )
    assert output_dir(tmp_path, "quick", "regression", args) == tmp_path / "mine"


def config_path(name: str) -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parent.parent / "configs" / f"{name}.toml"


@pytest.mark.parametrize(
    ("experiment", "setting", "message"),
    [
        (classification.BINARY, "experiment=binry", "experiment .* must be one of"),
        (classification.BINARY, "seeds=[]", "at least one problem and one seed"),
        (classification.BINARY, "problems=[]", "at least one problem and one seed"),
        (
            classification.BINARY,
            'problems=[{name = "linear_1d", label = "x", widths = [], n_train = 5}]',
            "gaussian problem",
        ),
        (
            regression.EXPERIMENT,
            'problems=[{name = "xor", label = "x", widths = [], n_train = 5}]',
            "not a regression one",
        ),
        (proxy_bias.EXPERIMENT, "labels=[]", "labels must name every problem"),
        (scaling.EXPERIMENT, "widths=[]", "at least one width"),
        (scaling.EXPERIMENT, 'priors=["flat"]', "unknown priors"),
        (scaling.EXPERIMENT, "prior_scale={30 = 0}", "positive scales"),
        (classification.BINARY, "mcmc.num_sample=3", "unknown config key"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_any_computation(
    tmp_path, experiment, setting, message
):
    with pytest.raises(config.ConfigError, match=message):
        main(experiment, ["--profile", "smoke", "--set", setting], root=tmp_path)
    assert not (tmp_path / "results").exists()  # nothing computed, nothing cached


@dataclasses.dataclass(frozen=True)
class _Toy:
    seeds: tuple[int, ...]
    unit_store: str = ""


def test_a_unit_store_keeps_finished_units_where_a_fresh_clone_finds_them(tmp_path):
    """A config's ``unit_store`` (a committed folder) replaces ``results/`` as the units' cache,
    so a paper run resumes from a clone that has no ``results/``."""
    calls = []

    def compute(cfg, item, seed, ctx):
        calls.append(seed)
        return {"value": np.asarray(10.0 * seed + item)}

    toy = Experiment(
        name="toy", schema=_Toy, config_file="toy.toml",
        units=lambda cfg: [("a", 1.0)], compute=compute,
        render=lambda cfg, profile, units, out: ["", "", str(sorted(units))],
        code=(), unit_settings=lambda cfg: "toy",
    )  # fmt: skip
    toml = tmp_path / "toy.toml"
    toml.write_text('seeds = [0, 1]\nunit_store = "figures/paper/toy/units"\n[profiles.quick]\n')
    argv = ["--config", str(toml), "--out", str(tmp_path / "out")]
    assert main(toy, argv, root=tmp_path) == 0
    assert calls == [0, 1]
    stored = sorted(p.name for p in (tmp_path / "figures/paper/toy/units").iterdir())
    assert len(stored) == 2 and not (tmp_path / "results" / "quick" / "toy").exists()
    shutil.rmtree(tmp_path / "results", ignore_errors=True)  # a fresh clone
    assert main(toy, argv, root=tmp_path) == 0
    assert calls == [0, 1]  # both read back, none recomputed


def test_help_lists_every_config_key_with_its_type_and_default(capsys):
    with pytest.raises(SystemExit) as done:
        main(classification.BINARY, ["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for line in (
        "grid_resolution: int (required)",
        "la_samples: int = 1000",
        "mcmc.num_samples: int = 1000",
        "map.prior_precision: float",
        "--out DIR",
        "results/custom",
    ):
        assert line in text, line


def test_a_registered_method_fills_every_applicable_table():
    for task in ("bernoulli", "categorical", "gaussian"):
        columns = methods.table_columns(task, "epistemic")
        assert columns[0] == "GN"  # the paper's estimator first
        others = [m.name for m in methods.applicable(task, "epistemic") if not m.point]
        assert [f"GN-vs-{m}" for m in others] == columns[-len(others) :]
    with pytest.raises(ValueError, match="already registered"):
        methods.register("GN", "epistemic", ("bernoulli",))(lambda fit: None)


def test_the_experiments_run_from_any_directory(tmp_path):
    """After ``pip install -e .`` (``make test`` does it) a user's own directory will do."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.regression", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "grid_points: int" in done.stdout
