"""Cost of the Laplace structures beside the gradient norm, measured in ONE run.

Two models: MLP 2-32-32-1 on binary XOR (1 185 parameters) and MLP 2-256-256-4 on 4-class rings
(67 588 parameters), 500 training points each, at their MAP; predictions on a 50 x 50 grid.
For each curvature structure (GGN; the full matrix only where it fits): seconds to build the
curvature + posterior, seconds for the linearised epistemic on the grid, and the Pearson
correlation of that map with the gradient norm's (all classes pooled). Compilation included.
"""

import time

import jax
import numpy as np

import gnuq
from gnuq import likelihoods, models, problems, train
from gnuq.baselines import laplace
from gnuq.baselines.curvature import get_path


def main() -> None:
    cases = [("xor", (32, 32), 1, "bernoulli"), ("rings4", (256, 256), 4, "categorical")]
    print(
        f"{'model':<22} {'params':>7} {'structure':<11} {'build s':>8} {'grid s':>8} {'r(GN)':>6}"
    )
    for name, widths, outputs, task in cases:
        problem = problems.get(name)
        x, y = problem.sample(jax.random.key(0), 500)
        model = models.mlp(jax.random.key(1), 2, widths, outputs)
        lik = likelihoods.get(task)
        fit = train.fit_map(model.apply, lik, model.params, x, y, train.MapConfig())
        grid = problem.grid(50)
        n_params = models.count_params(model.params)
        start = time.perf_counter()
        gn = np.asarray(gnuq.squared_grad_norms(model.apply, fit.params, grid, likelihood=task))
        label = f"MLP{widths} {name}"
        print(
            f"{label:<22} {n_params:>7} {'identity':<11} {0:8.2f} "
            f"{time.perf_counter() - start:8.2f} {1:6.2f}",
            flush=True,
        )
        structures = ["full", "kfac", "diag", "last_layer"]
        if n_params > 20_000:
            structures.remove("full")
        for structure in structures:
            start = time.perf_counter()
            post = laplace.laplace_posterior(
                model.apply, fit.params, x, y, lik, 1.0, structure=structure
            )
            sub = fit.params if post.path is None else get_path(fit.params, post.path)
            n_sub = models.count_params(sub)
            jax.block_until_ready(post.inv_quad(np.zeros((1, n_sub), np.float32)))
            built = time.perf_counter() - start
            start = time.perf_counter()
            la = np.asarray(laplace.linearised_epistemic(model.apply, fit.params, grid, lik, post))
            pred = time.perf_counter() - start
            r = np.corrcoef(la.ravel(), gn.ravel())[0, 1]
            print(
                f"{label:<22} {n_params:>7} {structure:<11} {built:8.2f} {pred:8.2f} {r:6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
