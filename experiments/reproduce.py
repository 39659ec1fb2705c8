"""Run every experiment on one profile, in order, each in its own process, then Table 1 and the
gallery (``experiments/gallery.py``).

Each experiment is a module ``experiments.<name>`` taking ``--profile``; running it in a fresh
process lets it set ``XLA_FLAGS`` (host device count) before JAX is imported. Every experiment
caches its units atomically, so an interrupted run (Ctrl-C or a kill) started again recomputes
only what was in flight. ``figures/<profile>/reproduce.json`` keeps the machine, each
experiment's wall time in the last run and the longest seen (a run from scratch), from which the
next run estimates an upper bound of its remaining time.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from experiments import gallery
from experiments.harness import report
from experiments.harness.config import PROFILES

EXPERIMENTS: list[str] = [  # binary, multiclass, ..., llm_qa
    name for name in gallery.PAPER_ITEMS if name not in gallery.SEPARATE_RUNS
]


def machine() -> dict:
    import jax  # only here: the experiments' own processes set XLA_FLAGS before theirs

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "jax_backend": jax.default_backend(),
        "python": platform.python_version(),
    }


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    args = parser.parse_args(argv)
    directory = gallery.profile_dir(gallery.ROOT, args.profile)
    log_path = directory / "reproduce.json"
    last = json.loads(log_path.read_text()) if log_path.exists() else {}
    previous = last.get("experiments", {})
    run = {"profile": args.profile, "machine": machine(), "experiments": {}}
    start = time.monotonic()
    for i, name in enumerate(EXPERIMENTS, 1):
        elapsed = time.monotonic() - start
        remaining = [previous.get(n, {}).get("longest") for n in EXPERIMENTS[i - 1 :]]
        eta = (
            f", at most {_minutes(sum(remaining))} to go (from scratch)"
            if None not in remaining
            else ""
        )
        print(
            f"=== [{i}/{len(EXPERIMENTS)}] {name} ({args.profile}): elapsed "
            f"{_minutes(elapsed)}{eta}",
            flush=True,
        )
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", f"experiments.{name}", "--profile", args.profile]
        if subprocess.call(cmd) != 0:
            print(f"experiment {name} failed; rerun `make reproduce` to resume", file=sys.stderr)
            return 1
        seconds = time.monotonic() - t0
        longest = max(seconds, previous.get(name, {}).get("longest", 0.0))
        run["experiments"][name] = {"seconds": seconds, "longest": longest}
        # after every experiment, so a run stopped later keeps the times it measured
        report.write_json(log_path, run | {"experiments": previous | run["experiments"]})
    run["total_seconds"] = time.monotonic() - start
    report.write_json(log_path, run)
    print(f"wrote {gallery.gallery(gallery.ROOT, args.profile)}")
    print(f"all {len(EXPERIMENTS)} experiments done in {_minutes(run['total_seconds'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
