"""What ``benchmarks/cost.py`` measures (the protocol's constants, the cost of one size) and how
it is reported: the per-input and component tables, the ratios, the figure, the Markdown page."""

import argparse
import dataclasses
import math
import os
import pathlib
import platform

import jax
import matplotlib
import numpy as np

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
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], marker="o", ls="none", color="grey", label="measured"),
        plt.Line2D([], [], marker="o", ls="none", mfc="white", color="grey", label="extrapolated"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
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
