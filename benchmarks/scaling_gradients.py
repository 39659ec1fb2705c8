"""Cost of one leapfrog step of the scaling sweep's NUTS reference, on whatever device runs this.

One leapfrog step = one gradient of the negative log posterior (``gnuq.train``) for every chain;
the chains run as the sweep runs them (4 vmapped chains on an accelerator, one chain at a time on
a CPU). Prints, per width and training-set size, the median seconds per step and the upper-bound
hours for 1000 warm-up + 1000 draws per chain at the maximal tree depth (1023 steps per
transition), the bound ``experiments/scaling.py`` compares with ``max_hours_per_chain``.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from gnuq import likelihoods, models, problems, train

WIDTHS = (0, 8, 16, 32, 64, 128, 256, 512, 1028)


def seconds_per_step(width: int, n_train: int, chains: int, repeats: int = 20) -> float:
    problem = problems.get("rings4")
    lik = likelihoods.get("categorical")
    x, y = problem.sample(jax.random.key(0), n_train)
    widths = () if width == 0 else (width, width)
    model = models.mlp(jax.random.key(1), 2, widths, 4)
    grad = jax.grad(train.neg_log_posterior(model.apply, lik, 1.0))
    params = jax.tree.map(lambda a: jnp.stack([a] * chains), model.params)
    step = jax.jit(jax.vmap(lambda p: grad(p, x, y)))
    jax.block_until_ready(step(params))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(params))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--max-width", type=int, default=1028)
    args = parser.parse_args()
    chains = 4 if jax.default_backend() != "cpu" else 1
    print(f"device: {jax.devices()[0].device_kind}, {chains} chain(s) per step")
    print("| model | params | N | ms / step | upper bound h / chain |")
    print("|---|---|---|---|---|")
    for n in args.n_train:
        for w in (w for w in WIDTHS if w <= args.max_width):
            s = seconds_per_step(w, n, chains)
            params = models.mlp_param_count(2, () if w == 0 else (w, w), 4)
            bound = s * 2000 * 1023 / 3600
            print(f"| {w or 'LogReg'} | {params} | {n} | {s * 1e3:.3f} | {bound:.2f} |", flush=True)


if __name__ == "__main__":
    main()
