"""Run every experiment on one profile, in order, each in its own process.

Each experiment is a module ``experiments.<name>`` taking ``--profile``; running it in a fresh
process lets it set ``XLA_FLAGS`` (host device count) before JAX is imported.
"""

import argparse
import subprocess
import sys
import time

from gnuq.config import PROFILES

# Appended as the experiments land, in the order `make reproduce` runs them.
EXPERIMENTS: list[str] = [
    "binary", "multiclass", "regression", "proxy_bias", "text_domains", "scaling", "llm_qa",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    args = parser.parse_args(argv)
    if not EXPERIMENTS:
        print("no experiment is implemented yet: nothing to reproduce (see the open issues)")
        return 0
    start = time.monotonic()
    for i, name in enumerate(EXPERIMENTS, 1):
        print(f"[{i}/{len(EXPERIMENTS)}] {name} ({args.profile})", flush=True)
        cmd = [sys.executable, "-m", f"experiments.{name}", "--profile", args.profile]
        if subprocess.call(cmd) != 0:
            print(f"experiment {name} failed; rerun `make reproduce` to resume", file=sys.stderr)
            return 1
    print(f"all {len(EXPERIMENTS)} experiments done in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
