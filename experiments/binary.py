"""Binary Linear / XOR / Rings: Tables 5 and 6, Figures 5-8 (see experiments/classification.py)."""

import sys

from experiments.classification import main

if __name__ == "__main__":
    sys.exit(main("binary.toml"))
