"""The README's Python examples run as written (slow: its 4 x (1000 + 1000) NUTS reference must
pass the gate); the default run takes them with a short reference, which checks the rest."""

import pathlib
import re

import jax
import pytest

from gnuq import problems

README = pathlib.Path(__file__).parent.parent / "README.md"
WRITTEN = "num_warmup=1000, num_samples=1000"  # the README's reference


def _run(monkeypatch, replace: str | None) -> tuple[str, dict]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2 and sum(WRITTEN in b for b in blocks) == 1
    if replace is not None:
        blocks = [b.replace(WRITTEN, replace) for b in blocks]
    # the README registers "stripes"; keep the global registry clean for other tests
    monkeypatch.setattr(problems, "_REGISTRY", dict(problems._REGISTRY))
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
    return namespace


def _check(printed: str, namespace: dict) -> None:
    assert "(100, 3) (100, 3) (100, 3)" in printed
    assert re.search(r"r\(GN, MCMC\) = -?\d\.\d\d, r\(LA, MCMC\) = -?\d\.\d\d", printed)
    assert namespace["x"].shape == (500, 2) and namespace["grid"].shape == (10000, 2)
    assert isinstance(namespace["problem"].sample(jax.random.key(1), 3)[0], jax.Array)


def test_readme_examples_run_with_a_short_reference(capsys, monkeypatch):
    namespace = _run(monkeypatch, "num_warmup=100, num_samples=100, num_chains=2")
    printed = capsys.readouterr().out
    _check(printed, namespace)
    assert "reference ok: " in printed  # too short to pass the gate: the verdict is printed


@pytest.mark.slow
def test_readme_examples_run_as_written(capsys, monkeypatch):
    namespace = _run(monkeypatch, None)
    printed = capsys.readouterr().out
    _check(printed, namespace)
    assert "reference ok: True" in printed
