"""The baselines the gradient norm is measured against.

- ``curvature``: Hessian / GGN / empirical Fisher, full, diagonal, last-layer or KFAC;
- ``laplace``: the Laplace posterior, linearised and sampled predictive, proxy Hessians;
- ``mcmc``: the reference posterior (BlackJAX NUTS / HMC) with its R-hat / ESS gate;
- ``mcmc_resumable``: the same sampler streamed and checkpointed, for large models.
"""

from gnuq.baselines import curvature, laplace, mcmc, mcmc_resumable

__all__ = ["curvature", "laplace", "mcmc", "mcmc_resumable"]
