"""Config loading: profiles, overrides, and errors that name the key and the file."""

import dataclasses

import pytest

from experiments.harness import config
from gnuq.train import MapConfig


@dataclasses.dataclass(frozen=True)
class Sampler:
    num_samples: int
    chains: int = 4


@dataclasses.dataclass(frozen=True)
class Experiment:
    problems: tuple[str, ...]
    widths: tuple[int, ...]
    sampler: Sampler
    map: MapConfig = dataclasses.field(default_factory=MapConfig)
    seeds: int = 3
    note: str | None = None
    scale: dict[str, float] = dataclasses.field(default_factory=dict)


TOML = """
problems = ["xor", "rings"]
widths = [32, 32]
[sampler]
num_samples = 1000
[map]
prior_precision = 2

[profiles.smoke]
sampler.num_samples = 10
seeds = 1
[profiles.quick]
"""


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text(TOML)
    return p


def test_profiles_and_overrides(path):
    quick = config.load(path, Experiment, "quick")
    assert quick.sampler == Sampler(1000, 4) and quick.seeds == 3 and quick.widths == (32, 32)
    assert quick.map.prior_precision == 2.0 and isinstance(quick.map.prior_precision, float)
    smoke = config.load(path, Experiment, "smoke", ["map.grad_tol=1e-6", "note=hello world"])
    assert smoke.sampler.num_samples == 10 and smoke.seeds == 1
    assert smoke.map.grad_tol == 1e-6 and smoke.note == "hello world"
    cfg, profile, _ = config.cli(Experiment, path, ["--profile", "smoke", "--set", "widths=[8]"])
    assert profile == "smoke" and cfg.widths == (8,)
    # a table merges key by key; its values are coerced like any other
    scaled = config.load(path, Experiment, "quick", ["scale={50 = 8}", "scale={200 = 4.5}"])
    assert scaled.scale == {"50": 8.0, "200": 4.5} and isinstance(scaled.scale["50"], float)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["sampler.num_sample=5"], "unknown config key.*sampler.num_sample"),
        (["seeds=2.5"], "seeds.*must be an integer"),
        (["map.prior_precision=yes"], "map.prior_precision.*must be a number"),
        (["widths=[8, 'a']"], r"widths\[1\].*integer"),
        (["sampler=3"], "table"),
        (["scale={50 = 'big'}"], "scale.50.*must be a number"),
        (["nonsense"], "section.key=value"),
    ],
)
def test_mistakes_name_the_key_and_file(path, overrides, message):
    with pytest.raises(config.ConfigError, match=message) as err:
        config.load(path, Experiment, "quick", overrides)
    if "=" in overrides[0]:
        assert str(path) in str(err.value)


def test_unknown_profile_and_missing_keys(path, tmp_path):
    with pytest.raises(config.ConfigError, match="no profile 'huge'"):
        config.load(path, Experiment, "huge")
    other = tmp_path / "partial.toml"
    other.write_text("problems = []\nwidths = []\n[profiles.quick]\n")
    with pytest.raises(config.ConfigError, match="sampler is required"):
        config.load(other, Experiment, "quick")
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml", Experiment, "quick")


def test_import_registers_a_users_problem_before_the_config_is_read(path, tmp_path, monkeypatch):
    from gnuq import problems

    monkeypatch.setattr(problems, "_REGISTRY", dict(problems._REGISTRY))  # leave no trace
    (tmp_path / "my_cfg_problems.py").write_text(
        "import jax.numpy as jnp\n"
        "from gnuq import problems\n\n"
        "@problems.register('cfg_test_band', task='bernoulli', box=((-1, 1), (-1, 1)))\n"
        "def band(key, n):\n"
        "    x = jnp.zeros((n, 2))\n"
        "    return x, jnp.zeros(n, int)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config.cli(Experiment, path, ["--import", "my_cfg_problems", "--profile", "smoke"])
    assert problems.get("cfg_test_band").task == "bernoulli"
    with pytest.raises(config.ConfigError, match="--import no_such_module_here"):
        config.cli(Experiment, path, ["--import", "no_such_module_here"])
