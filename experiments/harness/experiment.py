"""The one shape every experiment has: units of computation, each cached, and a rendering that
reads nothing but their results.

An ``Experiment`` names its config schema and file, lists its units (a name and an item, e.g. a
problem, for every seed), computes one unit (``compute(cfg, item, seed, ctx) -> arrays``) and
renders tables, figures and claims from all of them. ``main`` is the command line of every
experiment: it reads the config, computes or loads each unit (cached under ``results/`` by a key
that names the unit's settings, item, seed and the code of ``code``; or, where the config names
a ``unit_store``, in that folder of the checkout, committed, so that a long run resumes from a
fresh clone), renders into a scratch
folder and only then publishes the files into the output folder, so a run that fails leaves the
previous outputs as they were.
"""

import dataclasses
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from experiments.harness import cache, config
from experiments.harness.units import run_units

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Context(NamedTuple):
    """What a unit's computation may use beside its settings: where to log and cache."""

    log: Callable[[str], None]  # one progress line, with the elapsed time
    results: pathlib.Path  # root/results: caches shared by experiments (MCMC draws, assets)
    work: pathlib.Path  # this experiment's cache folder (checkpoints of a unit in flight)
    key: str  # the unit's cache key, to name its checkpoints


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str  # the output folder's name (a config's ``experiment`` key, if any, overrides it)
    schema: type  # the config dataclass
    config_file: str  # under configs/
    units: Callable[[Any], Sequence[tuple[str, Any]]]  # cfg -> [(unit name, item)]
    compute: Callable[[Any, Any, int, Context], dict[str, np.ndarray]]
    render: Callable[[Any, str, dict, pathlib.Path], list[str]]  # -> the claims' lines
    code: tuple  # the modules a unit computes with: their code is in every unit's key
    # the settings a unit depends on: the config less what only chooses which units run
    unit_settings: Callable[[Any], Any]
    check: Callable[[Any], None] = lambda cfg: None  # refuse settings that cannot work
    description: str = ""
    # whether a unit's result may be cached: False for one that reflects this machine's state
    # at the time (a size judged too slow to sample here), which the next run decides again
    cacheable: Callable[[dict], bool] = lambda arrays: True

    def output_name(self, cfg) -> str:
        return getattr(cfg, "experiment", self.name)


def main(
    experiment: Experiment, argv: Sequence[str] | None = None, root: pathlib.Path = ROOT
) -> int:
    """Run ``experiment`` from the command line ``argv``; outputs go under ``root``."""
    cfg, profile, args = config.cli(
        experiment.schema, ROOT / "configs" / experiment.config_file, argv, experiment.description
    )
    experiment.check(cfg)
    name = experiment.output_name(cfg)
    out = output_dir(root, profile, name, args)
    print(f"[{name} {profile}] outputs go to {out}", flush=True)
    start = time.monotonic()
    work = root / "results" / profile / name
    key_base = (experiment.unit_settings(cfg), cache.code_version(*experiment.code))

    def compute(item, seed, log, key):
        return experiment.compute(cfg, item, seed, Context(log, root / "results", work, key))

    store = getattr(cfg, "unit_store", "")
    units = run_units(
        f"{name} {profile}",
        experiment.units(cfg),
        cfg.seeds,
        root / store if store else work,
        key_base,
        compute,
        run_missing=getattr(cfg, "run_missing", True),
        cacheable=experiment.cacheable,
    )
    claims = publish(out, lambda scratch: experiment.render(cfg, profile, units, scratch))
    print("\n".join(claims[2:]))
    print(f"wrote {out} in {time.monotonic() - start:.0f} s")
    return 0


def output_dir(root: pathlib.Path, profile: str, name: str, args) -> pathlib.Path:
    """``--out``, else the committed ``figures/<profile>/<name>`` for the profile as written,
    else (settings changed by ``--set``, ``--import`` or ``--config``) ``results/custom``."""
    if args.out:
        return pathlib.Path(args.out).resolve()
    if args.custom:
        return root / "results" / "custom" / profile / name
    return root / "figures" / profile / name


def publish(out: pathlib.Path, render: Callable[[pathlib.Path], list[str]]) -> list[str]:
    """``render`` into a scratch folder beside ``out``; when it succeeds, move every file it
    wrote into ``out`` (each replaced atomically). A failure leaves ``out`` untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        claims = render(scratch)
        for path in sorted(p for p in scratch.rglob("*") if p.is_file()):
            target = out / path.relative_to(scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return claims


def run(experiment: Experiment) -> None:
    """The ``if __name__ == "__main__"`` of an experiment script."""
    try:
        sys.exit(main(experiment))
    except config.ConfigError as err:
        sys.exit(f"error: {err}")
