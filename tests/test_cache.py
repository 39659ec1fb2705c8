"""Cache keys change with content and code; files are written atomically and reloaded."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.harness import cache
from gnuq import likelihoods, models, problems
from gnuq.baselines import mcmc
from gnuq.baselines.mcmc import McmcConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_fingerprint_changes_with_content():
    a = cache.fingerprint({"x": np.arange(3)}, McmcConfig())
    assert a == cache.fingerprint({"x": np.arange(3)}, McmcConfig())
    assert a != cache.fingerprint({"x": np.arange(3) + 1}, McmcConfig())
    assert a != cache.fingerprint({"x": np.arange(3)}, McmcConfig(num_samples=17))
    # no two different structures may hash alike
    assert cache.fingerprint((1, 23)) != cache.fingerprint((12, 3))
    assert cache.fingerprint({"a": "b"}) != cache.fingerprint({"a:b": ""})
    assert cache.fingerprint([1, [2]]) != cache.fingerprint([[1], 2])
    assert cache.fingerprint("1") != cache.fingerprint(1)


def test_code_version_follows_the_code_not_its_comments(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    module = tmp_path / "pkg" / "m.py"
    module.write_text('"""Doc."""\n\nx = 1  # one\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    before = cache.code_version("pkg.m")
    module.write_text('"""Another doc."""\n# a comment\n\n\nx = (\n    1\n)\n')
    assert cache.code_version("pkg.m") == before  # comments, docstrings, layout: no change
    module.write_text("x = 2\n")
    assert cache.code_version("pkg.m") != before
    assert cache.code_version("pkg") != cache.code_version("pkg.m")  # the package: every module


def test_code_version_of_one_definition_follows_what_it_names(tmp_path, monkeypatch):
    """``"module:name"``: the definition and, transitively, the project definitions it names, in
    its module or another; an edit to anything else in those modules changes nothing."""
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "__init__.py").write_text("")
    files = {
        "a": (
            "from defs.b import helper\nfrom defs import b\nSCALE = 2\n\n"
            "def f(x):\n    return g(x) * SCALE + helper(x) + b.other(x)\n\n"
            "def g(x):\n    return x\n\ndef unrelated(x):\n    return -x\n"
        ),
        "b": "def helper(x):\n    return x\n\ndef other(x):\n    return x\n\n"
        "def unused(x):\n    return x\n",
    }
    for name, code in files.items():
        (tmp_path / "defs" / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cache, "PROJECT", ("defs",))
    before = cache.code_version("defs.a:f")
    edits = {  # (module, old, new): whether the version of f changes
        ("a", "return -x", "return x + 1"): False,
        ("b", "def unused(x):\n    return x", "def unused(x):\n    return 0"): False,
        ("a", "def g(x):\n", 'def g(x):\n    """Doc."""  # comment\n'): False,
        ("a", "SCALE = 2", "SCALE = 3"): True,
        ("a", "def g(x):\n    return x", "def g(x):\n    return 2 * x"): True,
        ("b", "def helper(x):\n    return x", "def helper(x):\n    return 0"): True,
        ("b", "def other(x):\n    return x", "def other(x):\n    return 0"): True,
    }
    for (name, old, new), changes in edits.items():
        path = tmp_path / "defs" / f"{name}.py"
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
        assert (cache.code_version("defs.a:f") != before) == changes, (name, new)
        path.write_text(files[name])
    with pytest.raises(ValueError, match="no top-level definition"):
        cache.code_version("defs.a:missing")


def test_keys_refuse_what_names_a_memory_address():
    with pytest.raises(TypeError, match="memory address"):
        cache.fingerprint(lambda x: x)
    with pytest.raises(TypeError, match="memory address"):
        cache.fingerprint(object())


def test_keys_are_the_same_in_another_process():
    """A key computed here equals the one another interpreter computes (no address, no hash
    randomisation): the committed records' keys must survive a fresh clone."""
    code = (
        "import jax, numpy as np; from experiments.harness import cache; "
        "from gnuq.baselines.mcmc import McmcConfig; "
        "print(cache.fingerprint({'a': np.arange(3.0)}, McmcConfig(), jax.random.key(1), "
        "cache.code_version('gnuq')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"PYTHONHASHSEED": "123"},
        cwd=ROOT,
    ).stdout.strip()
    here = cache.fingerprint(
        {"a": np.arange(3.0)}, McmcConfig(), jax.random.key(1), cache.code_version("gnuq")
    )
    assert out == here


def test_load_or_compute_round_trip_and_corruption(tmp_path):
    path = tmp_path / "sub" / "entry.npz"
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(4.0), "b": np.array("kfac")}

    first = cache.load_or_compute(path, compute)
    again = cache.load_or_compute(path, compute)
    assert len(calls) == 1 and np.array_equal(first["a"], again["a"]) and again["b"] == "kfac"
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable"):
        cache.load_or_compute(path, compute)
    assert len(calls) == 2 and not list(tmp_path.rglob("*.tmp"))
    arrays = dict(np.load(path))
    del arrays["b"]  # readable, but an array short
    np.savez(path, **arrays)
    with pytest.warns(UserWarning, match=r"incomplete \(missing \['b'\]\)"):
        cache.load_or_compute(path, compute)
    assert len(calls) == 3


def test_cached_reference_reloads_and_recovers_from_a_corrupt_file(tmp_path, monkeypatch):
    p = problems.get("linear_1d")
    x, y = p.sample(jax.random.key(0), 20)
    m = models.mlp(jax.random.key(1), 1, (), 1)
    lik = likelihoods.get("gaussian", p.noise_var)
    cfg = McmcConfig(num_warmup=100, num_samples=100, num_chains=2, progress=False)

    def run():
        return cache.reference(
            tmp_path, ("linear", 20, 0), jax.random.key(5), m.apply, lik, x, y, m.params, p.grid(5),
            1.0, cfg,
        )  # fmt: skip

    with pytest.warns(RuntimeWarning):  # too short to pass the gate; not the point here
        first = run()
    (path,) = tmp_path.glob("mcmc-*.npz")
    calls = []
    monkeypatch.setattr(mcmc, "sample", lambda *a: calls.append(a))
    with pytest.warns(RuntimeWarning):
        again = run()
    assert not calls  # loaded, not resampled
    np.testing.assert_array_equal(again.epistemic, first.epistemic)
    path.write_bytes(path.read_bytes()[:100])  # an interrupted copy, say
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="unreadable"):
        with pytest.warns(RuntimeWarning):
            recovered = run()
    np.testing.assert_array_equal(recovered.epistemic, first.epistemic)
    assert not list(tmp_path.glob(".*tmp"))


def test_a_result_refused_by_cacheable_is_returned_not_stored(tmp_path):
    path = tmp_path / "entry.npz"
    result = {"sampled": np.asarray(False)}
    arrays = cache.load_or_compute(path, lambda: result, lambda a: bool(a["sampled"]))
    assert not arrays["sampled"] and not path.exists()
    cache.load_or_compute(path, lambda: {"sampled": np.asarray(True)}, lambda a: bool(a["sampled"]))
    assert path.exists()
