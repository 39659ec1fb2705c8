"""Cache keys change with content and code; files are written atomically and reloaded."""

import numpy as np
import pytest

from gnuq import cache
from gnuq.mcmc import McmcConfig


def test_fingerprint_changes_with_content():
    a = cache.fingerprint({"x": np.arange(3)}, McmcConfig())
    assert a == cache.fingerprint({"x": np.arange(3)}, McmcConfig())
    assert a != cache.fingerprint({"x": np.arange(3) + 1}, McmcConfig())
    assert a != cache.fingerprint({"x": np.arange(3)}, McmcConfig(num_samples=7))
    # no two different structures may hash alike
    assert cache.fingerprint((1, 23)) != cache.fingerprint((12, 3))
    assert cache.fingerprint({"a": "b"}) != cache.fingerprint({"a:b": ""})
    assert cache.fingerprint([1, [2]]) != cache.fingerprint([[1], 2])
    assert cache.fingerprint("1") != cache.fingerprint(1)


def test_source_version_follows_the_code(tmp_path):
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "m.py"
    module.write_text("x = 1\n")
    before = cache.source_version(tmp_path / "pkg")
    assert before == cache.source_version(tmp_path / "pkg")
    module.write_text("x = 2\n")
    assert cache.source_version(tmp_path / "pkg") != before
    assert cache.source_version(module) == cache.source_version(tmp_path / "pkg" / "m.py")


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
