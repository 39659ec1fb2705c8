"""4-class Clusters / Spirals / Rings: Table 8 and Figure 2 (see experiments/classification.py)."""

from experiments.classification import MULTICLASS
from experiments.harness.experiment import run

if __name__ == "__main__":
    run(MULTICLASS)
