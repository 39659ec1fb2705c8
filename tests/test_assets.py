"""gnuq.assets: cached wheels are used without a download, corrupt ones are fetched again, and
every failure names what to do."""

import subprocess
import zipfile

import pytest

from experiments.harness import assets
from gnuq.pretrained import require


def _wheel(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_cached_wheel_is_used_and_members_extracted(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a cached wheel must not be downloaded again")

    monkeypatch.setattr(subprocess, "run", no_download)
    whl = _wheel(tmp_path / "some_pkg-1.0-py3-none-any.whl", {"some_pkg/data.txt": "hello"})
    assert assets.wheel("some-pkg", "1.0", tmp_path) == whl
    out = assets.member(whl, "some_pkg/data.txt", tmp_path / "x" / "data.txt")
    assert out.read_text() == "hello"
    assert not list(out.parent.glob(".*tmp"))
    with pytest.raises(assets.AssetError, match="no member 'nope'"):
        assets.member(whl, "nope", tmp_path / "nope")


def test_corrupt_wheel_is_refetched_and_a_failed_fetch_says_how_to_fix(tmp_path, monkeypatch):
    (tmp_path / "some_pkg-1.0-py3-none-any.whl").write_bytes(b"truncated")
    calls = []

    def failing_pip(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "No matching distribution found")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(assets.AssetError, match="copy its wheel into"):
        assets.wheel("some-pkg", "1.0", tmp_path)
    assert calls and "--no-deps" in calls[0] and "some-pkg==1.0" in calls[0]
    assert not (tmp_path / "some_pkg-1.0-py3-none-any.whl").exists()


def test_missing_optional_package_names_the_extra():
    with pytest.raises(ImportError, match=r"\.\[text\]"):
        require("a_package_that_does_not_exist", "text")
