"""Cost of the epistemic estimator at the top of the paper's scaling sweep, measured in ONE run.

MLP 2-1028-1028-4 (tanh, 1 065 012 parameters) on a grid of 10 000 inputs, all 4 classes:

- dense:   gnuq's outer-product identity (all classes, every input);
- plain:   one batched forward + backward of sum_n p_c(x_n) for every class c (the cost of
           ordinary gradients, which yields no per-example information);
- vmap:    per-example gradients with ``vmap(jacrev)`` on a subset, extrapolated linearly to
           all inputs (it costs minutes in full; the subset size is printed).

Compilation is excluded: each function runs once before timing; the median of ``--repeats``
runs is reported. The two estimator paths are checked to agree on the subset.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import gnuq
from gnuq import models, problems


def timed(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1028)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--vmap-subset", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    problem = problems.get("rings4")
    resolution = round(args.inputs**0.5)
    x = problem.grid(resolution)
    model = models.mlp(jax.random.key(0), 2, (args.width, args.width), 4, "tanh")
    apply, params = model.apply, model.params
    n_params = models.count_params(params)
    print(f"device: {jax.devices()[0].device_kind}, {len(x)} inputs, {n_params:,} parameters")

    def dense():
        return gnuq.squared_grad_norms(apply, params, x, likelihood="categorical", method="dense")

    @jax.jit
    def plain(p):
        def class_sum(q, c):
            return jnp.sum(jax.nn.softmax(apply(q, x), axis=-1)[:, c])

        return [jax.grad(class_sum)(p, c) for c in range(4)]

    subset = x[:: max(1, len(x) // args.vmap_subset)][: args.vmap_subset]

    def vmap():
        return gnuq.squared_grad_norms(
            apply, params, subset, likelihood="categorical", method="vmap"
        )

    t_dense = timed(dense, args.repeats)
    t_plain = timed(lambda: plain(params), args.repeats)
    t_vmap_subset = timed(vmap, max(1, args.repeats - 2))
    t_vmap = t_vmap_subset * len(x) / len(subset)

    sub_dense = gnuq.squared_grad_norms(
        apply, params, subset, likelihood="categorical", method="dense"
    )
    rel = float(jnp.linalg.norm(sub_dense - vmap()) / jnp.linalg.norm(vmap()))

    print(f"dense path (all inputs)                : {t_dense:8.3f} s")
    print(f"plain forward+backward, 4 classes      : {t_plain:8.3f} s")
    print(
        f"vmap path ({len(subset)} inputs, x{len(x) / len(subset):.0f} extrapolated): "
        f"{t_vmap:8.1f} s  ({t_vmap_subset:.3f} s measured)"
    )
    print(f"ratio dense / plain forward+backward   : {t_dense / t_plain:8.2f}x  (target <= 1.0x)")
    print(f"speed-up dense vs vmap                 : {t_vmap / t_dense:8.0f}x  (target >= 100x)")
    print(f"agreement on the subset (rel. L2 error): {rel:.1e}")


if __name__ == "__main__":
    main()
