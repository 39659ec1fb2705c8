"""Cost per input of every uncertainty method along the scaling sweep, measured in ONE run.

The synthetic counterpart of the paper's timing table. 4-class concentric rings (``rings4``),
N = 1000 training points, a 50 x 50 evaluation grid (2500 inputs, all 4 classes), float32, on
softmax regression (12 parameters) and MLP(w, w) (tanh) for w = 8 ... 1028 (1 065 012).
Measured at each size (compilation excluded unless said otherwise):

- GN dense / vmap: ``gnuq.uncertainty(..., method="dense" | "vmap")`` per input;
- plain: one batched forward + backward of sum_n p_c(x_n) per class c (ordinary gradients, no
  per-example information): what the gradient norm is compared with;
- LA full / KFAC / diag (GGN + prior): build = curvature + posterior, compilation included (as
  a user pays it once per posterior); query = g^T Sigma g per input through
  ``laplace.linearised_epistemic_fn`` (KFAC and diag: the dense eigenbasis / diagonal form, and
  the per-example-gradient path beside it for the speed-up); full is refused above 20 000
  parameters, as the library does;
- MCMC: the cost of one gradient of ``train.neg_log_posterior`` on the 1000 training points,
  times leapfrog steps per transition (NUTS), times (1000 warm-up + 1000 samples) x 4 chains,
  the reference protocol; amortised per input over the grid. Leapfrog steps per transition are
  measured by short real NUTS runs (one chain: the protocol's 1000 warm-up, then 200 samples)
  at the small sizes and extrapolated with a power law in the parameter count (capped at 1023,
  tree depth 10) above. Pushing the draws through
  the grid is not counted, so the MCMC cost is a lower bound.

Paths that would take long on all 2500 inputs are timed on the first n of them, n growing while
the time stays within ``--budget`` seconds, and extrapolated linearly; the tables say which.
On a machine shared with other jobs, run it pinned to one core (``taskset -c 0``): XLA's CPU
thread pool otherwise stalls small looped kernels by up to 30x when other processes hold the
cores (the report says which was done). Costs do not depend on the parameter values: sizes
with a NUTS run are timed at their MAP, the others at the initial parameters.
"""

import argparse
import math
import os
import pathlib
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from cost_results import (  # a sibling script module: benchmarks/ runs as scripts
    GRID,
    MAX_LEAPFROG,
    N_TRAIN,
    PRIOR,
    PROTOCOL,
    STRUCTURES,
    WIDTHS,
    LaCost,
    SizeCost,
    Timing,
    fmt,
    machine,
    plot,
    report,
)

import gnuq
from gnuq import likelihoods, models, problems, train
from gnuq.baselines import laplace, mcmc

# ---------------------------------------------------------------------------------------------
# measurements


def fastest(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed runs after one warm-up (compilation) run.

    The minimum, not ``gradient_norms.timed``'s median: on 2 shared cores, other work stalls
    small kernels by milliseconds, and the fastest run is the one it disturbed least.
    """
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def seconds_per_input(fn, x: jax.Array, budget: float, start: int = 8) -> Timing:
    """Seconds per input of ``fn(x[:n])`` (compilation excluded), n x4 from ``start`` while the
    next timing is predicted to stay within ``budget`` seconds; n = len(x) means measured."""
    n = min(start, len(x))
    while True:
        t = fastest(lambda n=n: fn(x[:n]), 1)
        if t < 0.3:
            t = min(t, fastest(lambda n=n: fn(x[:n]), 5))
        if n == len(x) or 4 * t > budget:
            return Timing(t / n, n, len(x))
        n = min(4 * n, len(x))


def plain_forward_backward(apply, params, x: jax.Array, classes: int) -> float:
    """Seconds per input of one batched forward + backward of sum_n p_c(x_n) per class c."""

    @jax.jit
    def plain(p):
        def class_sum(q, c):
            return jnp.sum(jax.nn.softmax(apply(q, x), axis=-1)[:, c])

        return [jax.grad(class_sum)(p, c) for c in range(classes)]

    return fastest(lambda: plain(params), 3) / len(x)


def gradient_norm_costs(apply, params, grid, budget: float) -> tuple[Timing, Timing, float]:
    """The estimator's dense and vmap paths, seconds per input (default chunks), and the dense
    path on all inputs in two equal chunks (the default 2048 pads 2500 inputs to 4096 rows)."""

    def run(method, chunk=None):
        return lambda xs: (
            gnuq.uncertainty(
                apply, params, xs, likelihood="categorical", method=method, chunk_size=chunk
            ).epistemic
        )

    even = fastest(lambda: run("dense", -(-len(grid) // 2))(grid), 3) / len(grid)
    dense = seconds_per_input(run("dense"), grid, budget)
    return dense, seconds_per_input(run("vmap"), grid, budget), even


def laplace_cost(structure, apply, params, x, y, grid, lik, budget: float) -> LaCost:
    """Build (compilation included) and per-input query of one GGN Laplace structure."""
    start = time.perf_counter()
    try:
        post = laplace.laplace_posterior(apply, params, x, y, lik, PRIOR, structure=structure)
    except ValueError as err:
        if "max_full_params" not in str(err):
            raise
        return LaCost(refused="refused")
    probe = jnp.zeros((1, models.count_params(params)), grid.dtype)
    jax.block_until_ready(post.inv_quad(probe))
    build = time.perf_counter() - start

    def query(method):
        return laplace.linearised_epistemic_fn(apply, params, lik, post, method=method)

    if structure == "full":
        return LaCost(build=build, query=seconds_per_input(query("vmap"), grid, budget))
    fast = seconds_per_input(query("dense"), grid, budget)
    slow = seconds_per_input(query("vmap"), grid, budget)
    subset = grid[: slow.timed_inputs]
    a, b = np.asarray(query("dense")(subset)), np.asarray(query("vmap")(subset))
    error = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    return LaCost(build=build, query=fast, per_example=slow, agreement=error)


def call_overhead(apply, params, x: jax.Array) -> float:
    """Seconds of one ``gnuq.uncertainty`` call on a single input: the fixed per-call cost
    (input checks, finding the Dense layers by an abstract trace, dispatch)."""
    return fastest(lambda: gnuq.uncertainty(apply, params, x[:1], likelihood="categorical"), 5)


def gradient_cost(apply, params, x, y, lik, steps: int = 20) -> float:
    """Seconds per gradient of the negative log posterior on all training points, inside one
    compiled loop of ``steps`` dependent gradient steps, as NUTS runs them (no dispatch cost)."""
    grad = jax.grad(train.neg_log_posterior(apply, lik, PRIOR))

    @jax.jit
    def loop(p):
        def step(_, q):
            return jax.tree.map(lambda a, g: a - 1e-12 * g, q, grad(q, x, y))

        return jax.lax.fori_loop(0, steps, step, p)

    return fastest(lambda: loop(params), 3) / steps


def nuts_leapfrog(
    apply, params, x, y, lik, warmup: int, samples: int
) -> tuple[float, float, float]:
    """One short NUTS chain: mean leapfrog steps per warm-up and per sampling transition, and
    its wall time in seconds (compilation included)."""
    potential = train.neg_log_posterior(apply, lik, PRIOR)
    with warnings.catch_warnings():  # one chain is enough to count steps
        warnings.filterwarnings("ignore", "one chain")
        cfg = mcmc.McmcConfig(num_warmup=warmup, num_samples=samples, num_chains=1, progress=False)
    init = mcmc.initial_positions(jax.random.key(2), params, cfg, PRIOR)
    start = time.perf_counter()
    chains = mcmc.sample(jax.random.key(3), lambda p: -potential(p, x, y), init, cfg)
    wall = time.perf_counter() - start
    return float(chains.warmup_steps[0]) / warmup, float(np.mean(chains.num_steps)), wall


def extrapolate_leapfrog(measured: dict[int, float], n_params: int) -> float:
    """Power law log L = a + b log P fitted to the measured MLP sizes, capped at tree depth
    10 (at most 1023 leapfrog steps per transition)."""
    sizes = np.array(sorted(measured))
    steps = np.array([measured[s] for s in sizes])
    if len(sizes) == 0:
        return math.nan
    if len(sizes) == 1:
        return float(steps[0])
    slope, offset = np.polyfit(np.log(sizes), np.log(steps), 1)
    return float(min(MAX_LEAPFROG, np.exp(offset + slope * np.log(n_params))))


def fit_map(apply, params, x, y, lik):
    """A MAP for the NUTS runs (a loose one does: only the sampler's step count is used)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cfg = train.MapConfig(prior_precision=PRIOR, lbfgs_steps=2000)
        return train.fit_map(apply, lik, params, x, y, cfg).params


def measure_size(width: int, data, args, measured_steps: dict[int, float]) -> SizeCost:
    """Every method at one model size."""
    x, y, grid, lik = data
    widths = (width, width) if width else ()
    model = models.mlp(jax.random.key(1), 2, widths, 4, "tanh")
    n_params = models.count_params(model.params)
    params, apply = model.params, model.apply
    run_nuts = n_params <= args.nuts_max_params
    if run_nuts:
        params = fit_map(apply, params, x, y, lik)
    log = lambda what: print(f"  [{n_params:>9,}] {what}", flush=True)  # noqa: E731
    log("gradient norm (dense, vmap)")
    gn_dense, gn_vmap, gn_even = gradient_norm_costs(apply, params, grid, args.budget)
    plain = plain_forward_backward(apply, params, grid, 4)
    la = {}
    for structure in STRUCTURES:
        log(f"Laplace {structure}")
        la[structure] = laplace_cost(structure, apply, params, x, y, grid, lik, args.budget)
    grad = gradient_cost(apply, params, x, y, lik)
    cost = SizeCost(widths, n_params, gn_dense, gn_vmap, plain, la, grad, gn_even)
    if run_nuts:
        log(f"NUTS {args.nuts_warmup} + {args.nuts_samples}, one chain")
        start = time.perf_counter()
        *phases, wall = nuts_leapfrog(apply, params, x, y, lik, args.nuts_warmup, args.nuts_samples)
        warmup, samples, _ = PROTOCOL
        steps = (warmup * phases[0] + samples * phases[1]) / (warmup + samples)
        if widths:  # the MLPs' trend; softmax regression is another model family
            measured_steps[n_params] = steps
        cost.leapfrog, cost.leapfrog_measured, cost.leapfrog_phases = steps, True, tuple(phases)
        model = (args.nuts_warmup * phases[0] + args.nuts_samples * phases[1]) * grad
        cost.nuts_check = (wall, model)
        log(
            f"NUTS: {phases[0]:.0f} / {phases[1]:.0f} leapfrog steps per warm-up / sampling "
            f"transition ({time.perf_counter() - start:.0f} s)"
        )
    return cost


# ---------------------------------------------------------------------------------------------
# reporting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-params", type=int, default=2_000_000)
    parser.add_argument("--quick", action="store_true", help="sizes up to 5 000 parameters")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per timed subset")
    parser.add_argument("--nuts-max-params", type=int, default=1_300)
    parser.add_argument("--nuts-warmup", type=int, default=1000)
    parser.add_argument("--nuts-samples", type=int, default=200)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("figures/cost"))
    args = parser.parse_args()
    if args.quick:
        args.max_params = min(args.max_params, 5_000)
        args.nuts_max_params = min(args.nuts_max_params, 1_500)
        args.nuts_warmup, args.nuts_samples, args.budget = 100, 100, 1.0

    problem = problems.get("rings4")
    x, y = problem.sample(jax.random.key(0), N_TRAIN)
    grid = problem.grid(GRID)
    data = (x, y, grid, likelihoods.get("categorical"))
    sizes = [
        w for w in WIDTHS if models.mlp_param_count(2, (w, w) if w else (), 4) <= args.max_params
    ]
    print(f"{machine()}; {N_TRAIN} training points, {len(grid)} inputs x 4 classes")
    load_before, start = os.getloadavg()[0], time.perf_counter()
    costs, steps = [], {}
    for i, width in enumerate(sizes):
        print(f"size {i + 1}/{len(sizes)} ({time.perf_counter() - start:.0f} s elapsed)")
        costs.append(measure_size(width, data, args, steps))
    for c in costs:
        if not c.leapfrog_measured:
            c.leapfrog = extrapolate_leapfrog(steps, c.n_params)
    small = models.mlp(jax.random.key(1), 2, (), 4)
    overhead = call_overhead(small.apply, small.params, grid)
    notes = (
        f"total wall time {time.perf_counter() - start:.0f} s; 1-minute load average "
        f"{load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    )
    if len(os.sched_getaffinity(0)) == 1:
        notes += (
            " (above 1, other work shared the core). On this shared machine, runs on both "
            "cores saw XLA's thread pool stall small looped kernels by up to 30x (full-LA "
            "queries at 388 parameters: 250 µs per input on 2 cores, 7.5 µs pinned to one) "
            "whenever other jobs held the cores, so this run was pinned to one core "
            "(`taskset -c 0`): stable, and for the matmul-bound large sizes up to about 2x "
            "slower than 2 idle cores"
        )
    notes += (
        f". One `gnuq.uncertainty` call on a single input takes {fmt(overhead)} at 12 "
        "parameters (input checks, layer discovery by abstract trace, dispatch): "
        f"{fmt(overhead / GRID**2)} per input of the grid, which dominates GN at the small sizes"
    )
    text = report(costs, args, notes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.md").write_text(text + "\n")
    plot(costs, GRID**2, args.out / "cost")
    print(text)
    print(f"wrote {args.out / 'cost.md'} and {args.out / 'cost.png'} (.pdf)")


if __name__ == "__main__":
    main()
