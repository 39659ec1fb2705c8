"""The baselines the gradient norm is measured against.

- ``curvature``: Hessian / GGN / empirical Fisher, full, diagonal, last-layer or KFAC, each
  structure a small object (``structures``) that knows its dense form and its covariance;
- ``laplace``: the Laplace posterior, linearised and sampled predictive, proxy Hessians;
- ``mcmc``: the reference posterior (BlackJAX NUTS / HMC) with its R-hat / ESS gate, built from
  ``sampler`` (configuration, warm-up and chains), ``moments`` (streamed predictive moments) and
  ``diagnostics`` (split R-hat, bulk ESS, the gate);
- ``mcmc_resumable``: the same sampler streamed and checkpointed, for large models.
"""

from gnuq.baselines import (
    curvature,
    diagnostics,
    laplace,
    mcmc,
    mcmc_resumable,
    moments,
    sampler,
    structures,
)

__all__ = [
    "curvature",
    "diagnostics",
    "laplace",
    "mcmc",
    "mcmc_resumable",
    "moments",
    "sampler",
    "structures",
]
