"""The README's Python examples run as written."""

import pathlib
import re

import jax

from gnuq import problems

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_readme_examples_run(capsys, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    # the README registers "stripes"; keep the global registry clean for other tests
    monkeypatch.setattr(problems, "_REGISTRY", dict(problems._REGISTRY))
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "(100, 3) (100, 3) (100, 3)" in printed
    assert "reference ok: True" in printed
    assert namespace["x"].shape == (500, 2) and namespace["grid"].shape == (10000, 2)
    assert isinstance(namespace["problem"].sample(jax.random.key(1), 3)[0], jax.Array)
