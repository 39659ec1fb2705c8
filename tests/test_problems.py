"""The problem registry: sampling, grids, errors, and registering a user's own problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gnuq import problems

EXPECTED = {
    "linear": ("bernoulli", 2, 2),
    "xor": ("bernoulli", 2, 2),
    "rings": ("bernoulli", 2, 2),
    "clusters": ("categorical", 4, 2),
    "spirals": ("categorical", 4, 2),
    "rings4": ("categorical", 4, 2),
    "linear_1d": ("gaussian", 0, 1),
    "nonlinear_1d": ("gaussian", 0, 1),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registered_problems_sample_what_they_declare(name):
    task, classes, dim = EXPECTED[name]
    p = problems.get(name)
    assert (p.task, p.num_classes, p.input_dim) == (task, classes, dim)
    x, y = p.sample(jax.random.key(0), 400)
    assert x.shape == (400, dim) and x.dtype == jnp.float32 and y.shape == (400,)
    x2, y2 = p.sample(jax.random.key(0), 400)
    assert bool(jnp.all(x == x2)) and bool(jnp.all(y == y2))  # deterministic given the key
    if task != "gaussian":
        # every class present: the classes are balanced, so a count is binomial(400, 1 / C),
        # and half its mean is > 5 sd below it
        counts = np.bincount(np.asarray(y), minlength=classes)
        assert len(counts) == classes and counts.min() > 400 / classes / 2
    lo, hi = np.array(p.box).T
    inside = np.mean(np.all((np.asarray(x) >= lo) & (np.asarray(x) <= hi), axis=1))
    # the evaluation box covers the data: over 99.9 % of each problem's population lies in it, so
    # 12 of 400 outside is > 5 sd off
    assert inside > 0.97


def test_grid_is_row_major_over_the_box():
    p = problems.get("xor")
    g = np.asarray(p.grid(5))
    assert g.shape == (25, 2)
    assert np.allclose(g[:5, 1], -3) and np.allclose(g[:5, 0], np.linspace(-3, 3, 5))
    assert problems.get("linear_1d").grid(7).shape == (7, 1)


def test_unknown_problem_lists_the_known_ones():
    with pytest.raises(KeyError, match="xor"):
        problems.get("moons")


def test_options_override_and_unknown_options_fail():
    assert problems.get("xor", flip=0.0).options["flip"] == 0.0
    x, y = problems.get("xor", flip=0.0).sample(jax.random.key(1), 200)
    assert bool(jnp.all(y == (x[:, 0] * x[:, 1] > 0)))
    with pytest.raises(ValueError, match="no option"):
        problems.get("xor", noise=0.3)
    assert problems.get("nonlinear_1d", noise=0.5).noise_var == pytest.approx(0.25)


def test_a_user_registers_a_problem_in_a_few_lines(monkeypatch):
    monkeypatch.setattr(problems, "_REGISTRY", dict(problems._REGISTRY))  # leave no trace

    @problems.register("test_stripes", task="bernoulli", box=((-1, 1), (-1, 1)))
    def stripes(key, n, width=0.5):
        x = jax.random.uniform(key, (n, 2), minval=-1, maxval=1)
        return x, (jnp.floor(x[:, 0] / width) % 2).astype(int)

    p = problems.get("test_stripes")
    _, y = p.sample(jax.random.key(0), 10)
    assert p.options == {"width": 0.5} and set(np.unique(y)) <= {0, 1}
    with pytest.raises(ValueError, match="already registered"):
        problems.register("test_stripes", task="bernoulli", box=((0, 1),))(stripes)
    with pytest.raises(ValueError, match="unknown task"):
        problems.register("bad", task="poisson", box=((0, 1),))


def test_sample_size_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        problems.get("xor").sample(jax.random.key(0), 0)
