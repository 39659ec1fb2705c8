"""gnuq: epistemic uncertainty as the squared gradient norm, aleatoric as p(1 - p).

Reproduction of "An Isotropic Approach to Efficient Uncertainty Quantification with Gradient
Norms" (arXiv 2603.29466). The method is in ``gnuq.estimators``; see the README for a tour.
"""

from gnuq import likelihoods, models, problems, train
from gnuq.estimators import (
    SequenceUncertainty,
    Uncertainty,
    dense_applies,
    sequence_uncertainty,
    squared_grad_norms,
    uncertainty,
)

__all__ = [
    "SequenceUncertainty",
    "Uncertainty",
    "dense_applies",
    "likelihoods",
    "models",
    "problems",
    "sequence_uncertainty",
    "squared_grad_norms",
    "train",
    "uncertainty",
]
