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
import dataclasses
import math
import os
import pathlib
import platform
import time
import warnings

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import gnuq
from gnuq import likelihoods, models, problems, train
from gnuq.baselines import laplace, mcmc

matplotlib.use("Agg")
import matplotlib.pyplot as plt

WIDTHS = (0, 8, 16, 32, 64, 128, 256, 512, 1028)  # 0: softmax regression, widths ()
N_TRAIN = 1000
GRID = 50  # 50 x 50 = 2500 evaluation inputs
PRIOR = 1.0
PROTOCOL = (1000, 1000, 4)  # NUTS warm-up, samples, chains of the reference
MAX_LEAPFROG = 2**10 - 1  # NUTS with tree depth 10
STRUCTURES = ("full", "kfac", "diag")


@dataclasses.dataclass
class Timing:
    """Seconds per input of one path and how many inputs were actually timed."""

    per_input: float
    timed_inputs: int
    total_inputs: int

    @property
    def measured(self) -> bool:
        return self.timed_inputs >= self.total_inputs


@dataclasses.dataclass
class LaCost:
    """One Laplace structure at one size; ``refused`` when the library declines to build it."""

    refused: str = ""
    build: float = math.nan
    query: Timing | None = None  # the dense form for kfac/diag, per-example gradients for full
    per_example: Timing | None = None  # kfac/diag: the per-example-gradient path beside it
    agreement: float = math.nan  # relative L2 error of the dense form vs per-example path


@dataclasses.dataclass
class SizeCost:
    widths: tuple[int, ...]
    n_params: int
    gn_dense: Timing
    gn_vmap: Timing
    plain: float  # seconds per input
    la: dict[str, LaCost]
    grad: float  # seconds per gradient of the negative log posterior (N = 1000)
    gn_even: float  # GN dense per input, the grid in two equal chunks (no padding)
    leapfrog: float = math.nan  # per transition, mean over the protocol's warm-up + samples
    leapfrog_measured: bool = False
    leapfrog_phases: tuple[float, float] = (math.nan, math.nan)  # measured (warm-up, sampling)
    nuts_check: tuple[float, float] = (math.nan, math.nan)  # short run: (wall, modelled) seconds

    def mcmc_posterior(self) -> float:
        warmup, samples, chains = PROTOCOL
        return (warmup + samples) * chains * self.leapfrog * self.grad

    def la_amortised(self, structure: str, inputs: int) -> float:
        la = self.la[structure]
        return math.nan if la.refused else la.build / inputs + la.query.per_input


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


def fmt(seconds: float) -> str:
    if math.isnan(seconds):
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            return f"{seconds / scale:.3g} {unit}"
    return ""


def fmt_long(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.3g} min" if seconds >= 60 else fmt(seconds)


def timing_cell(t: Timing) -> str:
    return fmt(t.per_input) + ("" if t.measured else f" (e, {t.timed_inputs})")


def model_name(widths: tuple[int, ...]) -> str:
    return "softmax regression" if not widths else f"MLP({widths[0]}, {widths[1]})"


def per_input_table(costs: list[SizeCost], inputs: int) -> str:
    """Seconds per input; LA and MCMC amortised over the grid (build or sampling / inputs)."""
    head = (
        "| model | params | GN dense | GN vmap | plain fwd+bwd | LA full | LA KFAC | LA diag "
        "| MCMC | GN / plain | full / GN | KFAC / GN | diag / GN | MCMC / GN |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c in costs:
        gn = c.gn_dense.per_input
        cells = [model_name(c.widths), f"{c.n_params:,}", timing_cell(c.gn_dense)]
        cells += [timing_cell(c.gn_vmap), fmt(c.plain)]
        for s in STRUCTURES:
            la = c.la[s]
            cells.append(la.refused or fmt(c.la_amortised(s, inputs)) + _e(la.query.measured))
        mcmc_in = c.mcmc_posterior() / inputs
        cells.append(fmt(mcmc_in) + _e(c.leapfrog_measured))
        cells.append(f"{gn / c.plain:.2f}x")
        for s in STRUCTURES:
            cells.append("" if c.la[s].refused else f"{c.la_amortised(s, inputs) / gn:.3g}x")
        cells.append(f"{mcmc_in / gn:.3g}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _e(measured: bool) -> str:
    return "" if measured else " (e)"


def component_table(costs: list[SizeCost]) -> str:
    """Build and query costs of the Laplace structures; the MCMC reference's ingredients."""
    head = (
        "| params | full build | full query | KFAC build | KFAC query | KFAC per-example g "
        "| diag build | diag query | diag per-example g | grad U (N=1000) | leapfrog / transition "
        "| MCMC per posterior | short NUTS run: wall / modelled |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c in costs:
        cells = [f"{c.n_params:,}"]
        for s in STRUCTURES:
            la = c.la[s]
            if la.refused:
                cells += ["refused", ""] + ([""] if s != "full" else [])
                continue
            cells += [fmt(la.build), timing_cell(la.query)]
            if s != "full":
                cells.append(timing_cell(la.per_example))
        if c.leapfrog_measured:
            source = "measured: {:.0f} warm-up, {:.0f} sampling".format(*c.leapfrog_phases)
        else:
            source = "extrapolated"
        cells += [fmt(c.grad), f"{c.leapfrog:.0f} ({source})", fmt_long(c.mcmc_posterior())]
        wall, model = c.nuts_check
        cells.append("" if math.isnan(wall) else f"{fmt(wall)} / {fmt(model)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_lines(costs: list[SizeCost], inputs: int) -> list[str]:
    """The issue's targets as measured ratios (printed, never asserted)."""
    worst = max(c.gn_dense.per_input / c.plain for c in costs)
    big = [c for c in costs if c.n_params > 10_000]
    out = [
        f"- GN dense / one batched forward+backward: at most {worst:.2f}x (target <= 1x); "
        "below 10k parameters the fixed per-call cost dominates (see above)"
    ]
    if big:
        even = ", ".join(f"{c.gn_even / c.plain:.2f}x" for c in big)
        pad = ", ".join(f"{c.gn_dense.per_input / c.plain:.2f}x" for c in big)
        out.append(
            f"- the same beyond 10k parameters ({', '.join(f'{c.n_params:,}' for c in big)}): "
            f"{pad} with the default chunk of 2048 rows (2500 inputs padded to 4096), {even} "
            "with the grid in two equal chunks"
        )
    for c in costs:
        full = c.la["full"]
        if c.n_params > 10_000 and not full.refused:
            q = full.query.per_input / c.gn_dense.per_input
            a = c.la_amortised("full", inputs) / c.gn_dense.per_input
            out.append(
                f"- full LA / GN at {c.n_params:,} parameters: {q:,.0f}x per query, {a:,.0f}x "
                "with the build amortised over the grid (target >= 100x beyond 10k)"
            )
    for s in ("kfac", "diag"):
        done = [c for c in costs if not c.la[s].refused]
        speed = [c.la[s].per_example.per_input / c.la[s].query.per_input for c in done]
        err = max(c.la[s].agreement for c in done)
        out.append(
            f"- {s} query, speed-up of the dense form over per-example gradients: "
            f"{min(speed):.2g}x to {max(speed):,.3g}x (largest at {done[-1].n_params:,} "
            f"parameters: {speed[-1]:,.3g}x); max relative L2 difference {err:.1e} (float32)"
        )
    return out


def plot(costs: list[SizeCost], inputs: int, path: pathlib.Path) -> None:
    """Log-log seconds per input against parameters; hollow markers = extrapolated."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    p = np.array([c.n_params for c in costs])
    series = [
        ("GN dense", "C0", "o", [(c.gn_dense.per_input, c.gn_dense.measured) for c in costs]),
        ("GN vmap", "C1", "s", [(c.gn_vmap.per_input, c.gn_vmap.measured) for c in costs]),
        ("plain fwd+bwd", "0.5", "", [(c.plain, True) for c in costs]),
    ]
    for s, colour, marker in (("full", "C3", "D"), ("kfac", "C2", "^"), ("diag", "C4", "v")):
        pts = [
            (c.la_amortised(s, inputs), c.la[s].refused or c.la[s].query.measured) for c in costs
        ]
        series.append((f"LA {s} (build amortised)", colour, marker, pts))
    pts = [(c.mcmc_posterior() / inputs, c.leapfrog_measured) for c in costs]
    series.append(("MCMC 4x(1000+1000) (amortised)", "k", "*", pts))
    for label, colour, marker, pts in series:
        y = np.array([v for v, _ in pts])
        ok = np.isfinite(y)
        ax.plot(p[ok], y[ok], color=colour, ls="--" if not marker else "-", label=label)
        if marker:
            meas = np.array([m for _, m in pts], bool)
            ax.plot(p[ok & meas], y[ok & meas], marker, color=colour, ls="none")
            ax.plot(p[ok & ~meas], y[ok & ~meas], marker, mfc="white", color=colour, ls="none")
    ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel="seconds per input")
    ax.set_title(f"4-class rings, N = {N_TRAIN} training, {inputs} inputs x 4 classes, CPU")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    for suffix in (".png", ".pdf"):
        fig.savefig(path.with_suffix(suffix), dpi=150)
    plt.close(fig)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in names if "model name" in line)
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0))
    return (
        f"{cpu}, {os.cpu_count()} cores ({usable} usable by this process), JAX "
        f"{jax.__version__} on {jax.default_backend()}, float32"
    )


# ---------------------------------------------------------------------------------------------


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


def report(costs: list[SizeCost], args: argparse.Namespace, notes: str) -> str:
    """The Markdown report: setting, both tables, ratios against the targets."""
    inputs = GRID**2
    return "\n\n".join(
        [
            f"# Cost per input (`benchmarks/cost.py`)\n\nMachine: {machine()}. 4-class rings, "
            f"N = {N_TRAIN} training points, {GRID} x {GRID} = {inputs} evaluation inputs, all "
            f"4 classes; {notes}.",
            "## Seconds per input (figure data)\n\nLA: build / inputs + query; MCMC: cost per "
            "posterior / inputs. (e) = extrapolated: a path timed on the first n inputs (n in "
            "the cell) and scaled linearly, or NUTS leapfrog steps extrapolated from the sizes "
            "where short runs measured them. Ratios are per input against GN dense.\n\n"
            + per_input_table(costs, inputs),
            "## Components\n\nBuild: curvature + posterior, compilation included. Query: "
            "g^T Sigma g per input (KFAC, diag: from layer inputs and pre-activation gradients; "
            "'per-example g': forming each gradient with vmap(jacrev), the former path). MCMC "
            f"per posterior = ({PROTOCOL[0]} + {PROTOCOL[1]}) x {PROTOCOL[2]} chains x leapfrog "
            "x grad U, with leapfrog the mean per transition over the protocol: one NUTS chain "
            f"of {args.nuts_warmup} warm-up + {args.nuts_samples} samples, the warm-up's mean "
            f"weighted by {PROTOCOL[0]} and the sampling mean by {PROTOCOL[1]}, up to "
            f"{args.nuts_max_params:,} parameters; above, a power law in P fitted to the measured "
            "MLPs. "
            "Pushing the draws through the grid is not counted. grad U is timed inside one "
            "compiled loop, as NUTS calls it; the last column checks the model against the "
            "short run's wall time (which includes compilation).\n\n" + component_table(costs),
            "## Ratios against the targets\n\n" + "\n".join(ratio_lines(costs, inputs)),
        ]
    )


if __name__ == "__main__":
    main()
