"""The loop every experiment shares: one cached unit of work per (problem, seed), with progress."""

import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from experiments.harness import cache


def run_units(
    tag: str,
    items: Sequence[tuple[str, object]],
    seeds: Sequence[int],
    cache_dir: pathlib.Path,
    key_base: object,
    compute: Callable[[object, int, Callable[[str], None], str], dict[str, np.ndarray]],
    run_missing: bool = True,
    cacheable: Callable[[dict[str, np.ndarray]], bool] = lambda arrays: True,
) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """``{(name, seed): arrays}`` for every ``(name, item)`` and seed.

    Each unit is ``compute(item, seed, log, key)``, cached under ``cache_dir`` by a hash of
    ``key_base``, the item and the seed (``key``: so a changed setting or code version
    recomputes; a unit names its checkpoints by it), and loaded instead when present; a result
    that ``cacheable`` refuses is used but not stored. ``log`` prints a progress line with the
    elapsed time. With ``run_missing=False`` only cached units are returned (the others are
    listed, not computed).
    """
    todo = [(name, item, seed) for name, item in items for seed in seeds]
    units = {}
    start = time.monotonic()
    for i, (name, item, seed) in enumerate(todo, 1):

        def log(msg: str, i=i, name=name, seed=seed) -> None:
            print(
                f"[{tag} {i}/{len(todo)}] {name} seed {seed}: {msg} "
                f"(elapsed {time.monotonic() - start:.0f} s)",
                flush=True,
            )

        key = cache.fingerprint(key_base, item, seed)
        path = cache_dir / f"{name}-seed{seed}-{key}.npz"
        if path.exists():
            log("cached")
        elif not run_missing:
            log("not computed yet (run_missing = false): left out")
            continue
        units[(name, seed)] = cache.load_or_compute(
            path,
            lambda item=item, seed=seed, log=log, key=key: compute(item, seed, log, key),
            cacheable,
        )
        log(f"done; ETA {(time.monotonic() - start) / i * (len(todo) - i):.0f} s")
    return units
