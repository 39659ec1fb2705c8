"""Binary Linear / XOR / Rings: Tables 5 and 6, Figures 5-8 (see experiments/classification.py)."""

from experiments.classification import BINARY
from experiments.harness.experiment import run

if __name__ == "__main__":
    run(BINARY)
