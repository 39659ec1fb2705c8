"""gnuq: epistemic uncertainty as the squared gradient norm, aleatoric as p(1 - p).

Reproduction of "An Isotropic Approach to Efficient Uncertainty Quantification with Gradient
Norms" (arXiv 2603.29466). The method is ``gnuq.uncertainty`` (``gnuq.estimators``); the
baselines (``gnuq.curvature``, ``gnuq.laplace``, ``gnuq.mcmc``) live in ``gnuq.baselines`` and
the pretrained models in ``gnuq.pretrained``. See the README for a tour.
"""

from importlib import metadata

from gnuq import likelihoods, models, problems, stats, train
from gnuq.baselines import curvature, laplace, mcmc, mcmc_resumable
from gnuq.estimators import (
    SequenceUncertainty,
    Uncertainty,
    dense_applies,
    engine_coverage,
    sequence_uncertainty,
    squared_grad_norms,
    uncertainty,
)

try:
    __version__ = metadata.version("gnuq")
except metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "SequenceUncertainty",
    "Uncertainty",
    "__version__",
    "curvature",
    "dense_applies",
    "engine_coverage",
    "laplace",
    "likelihoods",
    "mcmc",
    "mcmc_resumable",
    "models",
    "problems",
    "sequence_uncertainty",
    "squared_grad_norms",
    "stats",
    "train",
    "uncertainty",
]
