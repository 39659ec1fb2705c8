"""The one place gnuq touches files: atomic ``.npz`` checkpoints of arrays and pytrees.

Long computations (``train.finetune``, ``baselines.mcmc_resumable.reference``) take an optional
checkpoint path and resume from it. A checkpoint is written to a temporary name and renamed into
place, so an interruption leaves either the previous checkpoint or the complete new one; one that
cannot be read is reported (a warning naming the file) and treated as absent.
"""

import os
import pathlib
import warnings
from typing import Any

import jax
import numpy as np


def load(path: str | pathlib.Path) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path``; None when it is absent, or unreadable (with a warning)."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # a truncated or foreign file: say so, then recompute
        warnings.warn(f"file {path} is unreadable ({err}); recomputing", stacklevel=3)
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
    """Inverse of ``tree_to_arrays`` given a pytree with the same structure. Raises ``KeyError``
    naming the missing entry when ``arrays`` lacks one."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(
        treedef, [arrays[prefix + jax.tree_util.keystr(p)] for p, _ in leaves]
    )
