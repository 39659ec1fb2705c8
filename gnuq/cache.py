"""Atomic, content-keyed caching of arrays in ``.npz`` files under ``results/``.

A cache entry's name is a hash of everything that determines it (``fingerprint``), so a changed
config, dataset or seed never reads a stale file. Files are written to a temporary name and
renamed into place, so an interrupted run leaves either the old state or the complete new file;
a file that fails to load is reported and recomputed.
"""

import dataclasses
import hashlib
import os
import pathlib
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import jax
import numpy as np

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "blackjax", "numpy", "scipy")


def fingerprint(*parts: Any) -> str:
    """A short, stable sha256 of nested dicts, sequences, dataclasses, arrays and scalars."""
    digest = hashlib.sha256()
    _feed(digest, parts)
    return digest.hexdigest()[:20]


def source_version(*paths: str | pathlib.Path) -> str:
    """A hash of the Python sources (files, or every ``.py`` under directories) that compute a
    cached result, and of the numerical libraries' versions: part of its key, so a change to that
    code or an upgrade never reuses a stale file."""
    digest = hashlib.sha256()
    for package in LIBRARIES:  # an upgrade of these can change numbers too
        digest.update(f"{package}={metadata.version(package)};".encode())
    for path in map(pathlib.Path, paths):
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:20]


def _feed(digest, obj: Any) -> None:
    """Feed ``obj`` unambiguously: every item is tagged with its type and length, so that, for
    instance, (1, 23) and (12, 3) or {"a": "b"} and {"a:b": ""} never hash alike."""

    def put(tag: str, payload: bytes) -> None:
        digest.update(f"{tag}:{len(payload)}:".encode() + payload)

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        put("dataclass", type(obj).__name__.encode())
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        put("dict", str(len(obj)).encode())
        for key in sorted(obj, key=repr):
            put("key", repr(key).encode())
            _feed(digest, obj[key])
    elif isinstance(obj, list | tuple):
        put("seq", str(len(obj)).encode())
        for item in obj:
            _feed(digest, item)
    elif isinstance(obj, np.ndarray | jax.Array):
        arr = np.ascontiguousarray(np.asarray(obj))
        put("array", f"{arr.dtype}{arr.shape}".encode() + arr.tobytes())
    else:
        put(type(obj).__name__, repr(obj).encode())


def load_or_compute(
    path: str | pathlib.Path, compute: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Return the arrays stored at ``path``, or ``compute()`` them and store them atomically."""
    arrays = load(path)
    if arrays is None:
        arrays = {k: np.asarray(v) for k, v in compute().items()}
        save(path, arrays)
    return arrays


def load(path: str | pathlib.Path) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path``; None when it is absent, or unreadable (with a warning)."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # a truncated or foreign file: say so, then recompute
        warnings.warn(f"cache file {path} is unreadable ({err}); recomputing", stacklevel=3)
        return None


def save(path: str | pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """Store arrays at ``path`` atomically: a temporary file renamed into place."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def tree_to_arrays(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten a pytree into ``{prefix + keypath: array}`` for ``np.savez``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {prefix + jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def arrays_to_tree(arrays: dict[str, np.ndarray], template: Any, prefix: str = "") -> Any:
    """Inverse of ``tree_to_arrays`` given a pytree with the same structure."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(
        treedef, [arrays[prefix + jax.tree_util.keystr(p)] for p, _ in leaves]
    )
