"""Which way of running NUTS chains is fastest here: sequential, vmap, or spread over devices.

XOR, MLP 2-32-32-1 (1 185 parameters, tanh), 500 training points, 4 chains of 1000 warm-up +
1000 samples each, for every chain method in ONE run. Printed per method: wall time (compilation
included, as a user pays it), gradient evaluations per second (warm-up + sampling leapfrog
steps / wall time), and the bulk ESS per second of p(x) at 5 fixed inputs (the minimum over them).

Two host devices are requested before JAX is imported, so ``devices`` has somewhere to go.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from gnuq import likelihoods, models, problems, train
from gnuq.baselines import mcmc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--methods", default="sequential,vmap,devices")
    args = parser.parse_args()

    problem = problems.get("xor")
    x, y = problem.sample(jax.random.key(0), 500)
    model = models.mlp(jax.random.key(1), 2, (32, 32), 1, "tanh")
    lik = likelihoods.get("bernoulli")
    fit = train.fit_map(model.apply, lik, model.params, x, y, train.MapConfig())
    potential = train.neg_log_posterior(model.apply, lik, 1.0)
    probe = jnp.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0], [2.5, -2.5], [0.5, -1.5]])
    print(
        f"{jax.device_count()} {jax.devices()[0].platform} devices, "
        f"{models.count_params(model.params)} parameters, {args.warmup} + {args.samples} steps, "
        "4 chains"
    )
    print(f"{'method':<11} {'wall s':>8} {'grad/s':>9} {'ESS/s p(x)':>11} {'R-hat':>6} {'div':>4}")
    for method in args.methods.split(","):
        cfg = mcmc.McmcConfig(
            num_warmup=args.warmup, num_samples=args.samples, chain_method=method, progress=False
        )
        init = mcmc.initial_positions(jax.random.key(2), fit.params, cfg, 1.0)
        start = time.perf_counter()
        chains = mcmc.sample(jax.random.key(3), lambda p: -potential(p, x, y), init, cfg)
        wall = time.perf_counter() - start
        grads = float(np.sum(chains.num_steps) + np.sum(chains.warmup_steps))
        p = jax.vmap(jax.vmap(lambda q: jax.nn.sigmoid(model.apply(q, probe)[:, 0])))(
            chains.positions
        )
        rhat, ess = mcmc.split_rhat_and_bulk_ess(np.asarray(p))
        divergences = int(np.sum(chains.divergent))
        print(
            f"{method:<11} {wall:8.1f} {grads / wall:9.0f} {ess.min() / wall:11.1f} "
            f"{rhat.max():6.3f} {divergences:4d}",
            flush=True,
        )


if __name__ == "__main__":
    main()
