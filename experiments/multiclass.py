"""4-class Clusters / Spirals / Rings: Table 8 and Figure 2 (see experiments/classification.py)."""

import sys

from experiments.classification import main

if __name__ == "__main__":
    sys.exit(main("multiclass.toml"))
