"""One script per paper experiment; ``python -m experiments.reproduce`` runs them all."""
