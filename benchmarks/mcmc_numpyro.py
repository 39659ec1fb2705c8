"""gnuq's NUTS reference against NumPyro's NUTS, side by side in ONE run, in ESS per second.

XOR, MLP 2-32-32-1 (1 185 parameters, tanh), N = 500 training points, the N(0, I) prior
(precision 1), the same MAP (``train.fit_map``) and the same starts (MAP + 0.01 N(0, I), from
``mcmc.initial_positions``), 4 chains over 4 host devices (gnuq ``chain_method="devices"``,
NumPyro ``chain_method="parallel"``). NumPyro samples exactly gnuq's potential
``train.neg_log_posterior`` (``NUTS(potential_fn=...)`` on the same params pytree), with its
defaults (diagonal mass matrix and step size adapted by Stan's windows, target acceptance 0.8,
tree depth 10). gnuq runs with today's settings and with each candidate of ``CANDIDATES``.

Printed per sampler: wall time (compilation and warm-up included, as a user pays it), gradient
evaluations (warm-up + sampling leapfrog steps), the minimum bulk ESS and the maximum split
R-hat (``mcmc.split_rhat_and_bulk_ess``, the same function for both) of the predicted
probabilities at 256 grid inputs over the problem's box, ESS/s and its ratio to NumPyro's
("ratio"), the ratio of ESS per gradient evaluation ("/grad": immune to the machine's load
changing during the run), divergences, mean tree depth log2(leapfrog steps + 1) of the sampling
phase, and the agreement of the predictive variances Var_s[p(x)] with NumPyro's at the 256
inputs (Pearson r, Spearman rho): a speed-up must not come from a wrong posterior. The numbers
are saved to ``figures/mcmc/numpyro.json`` (``--out``).

Needs NumPyro (``pip install -e .[mcmcbench]``). Four host devices are requested before JAX is
imported. The machine's other load moves every wall time: compare the ratios of one run.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

import argparse
import dataclasses
import json
import pathlib
import platform
import subprocess
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from gnuq import likelihoods, models, problems, train
from gnuq.baselines import mcmc

# name -> the McmcConfig fields that differ from today's defaults (num_samples stays 1000)
CANDIDATES: dict[str, dict] = {
    "default": {},  # today's: Stan's windows from the identity, 1000 warm-up steps, depth 10
    "windows-300": {"num_warmup": 300},
    "windows-300-depth7": {"num_warmup": 300, "max_tree_depth": 7},
}


class Run(NamedTuple):
    wall: float
    grads: float  # warm-up + sampling leapfrog steps, all chains
    probs: np.ndarray  # [chains, samples, 256] predicted probabilities at the grid
    divergences: int
    tree_depth: float  # mean log2(leapfrog steps + 1) over the sampling transitions
    step_size: list[float]


def run_gnuq(setup: dict, config: mcmc.McmcConfig) -> Run:
    s = setup
    start = time.perf_counter()
    chains = mcmc.posterior_chains(
        jax.random.key(3), s["apply"], s["lik"], s["x"], s["y"], s["map"], 1.0, config, s["init"]
    )
    jax.block_until_ready(chains)
    wall = time.perf_counter() - start
    steps = np.asarray(chains.num_steps, np.float64)
    return Run(
        wall,
        float(steps.sum() + np.sum(chains.warmup_steps)),
        s["predict"](chains.positions),
        int(np.sum(chains.divergent)),
        float(np.mean(np.log2(steps + 1))),
        [float(v) for v in np.asarray(chains.step_size)],
    )


def run_numpyro(setup: dict, num_warmup: int, num_samples: int) -> Run:
    from numpyro.infer import MCMC, NUTS

    class Counted(NamedTuple):  # NUTS's state and the leapfrog steps so far, warm-up included
        z: Any
        hmc: Any
        grads: jax.Array

    class CountingNUTS(NUTS):
        """NumPyro's NUTS, counting its gradient evaluations in the state (no host call)."""

        @property
        def default_fields(self):
            return ("z", "hmc.diverging")

        def init(self, *args, **kwargs):
            state = super().init(*args, **kwargs)
            return Counted(state.z, state, jnp.zeros((), jnp.int32))

        def sample(self, state, model_args, model_kwargs):
            new = super().sample(state.hmc, model_args, model_kwargs)
            return Counted(new.z, new, state.grads + new.num_steps)

        def get_diagnostics_str(self, state):
            return super().get_diagnostics_str(state.hmc)

    s = setup
    potential = train.neg_log_posterior(s["apply"], s["lik"], 1.0)
    kernel = CountingNUTS(potential_fn=lambda p: potential(p, s["x"], s["y"]))
    sampler = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=s["num_chains"],
        chain_method="parallel",
        progress_bar=False,
    )
    start = time.perf_counter()
    sampler.run(jax.random.key(4), init_params=s["init"], extra_fields=("hmc.num_steps", "grads"))
    samples = sampler.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    wall = time.perf_counter() - start
    extra = sampler.get_extra_fields(group_by_chain=True)
    steps = np.asarray(extra["hmc.num_steps"], np.float64)
    last = sampler.last_state
    return Run(
        wall,
        float(np.sum(np.asarray(extra["grads"])[:, -1])),
        s["predict"](samples),
        int(np.sum(extra["hmc.diverging"])),
        float(np.mean(np.log2(steps + 1))),
        [float(v) for v in np.asarray(last.hmc.adapt_state.step_size)],
    )


def summary(run: Run, reference: Run | None) -> dict:
    rhat, ess = mcmc.split_rhat_and_bulk_ess(run.probs)
    var = run.probs.reshape(-1, run.probs.shape[-1]).var(axis=0)
    row = {
        "wall_s": run.wall,
        "grads": run.grads,
        "ess_min": float(ess.min()),
        "ess_per_s": float(ess.min() / run.wall),
        "ess_per_1k_grads": float(1e3 * ess.min() / run.grads),
        "rhat_max": float(rhat.max()),
        "divergences": run.divergences,
        "mean_tree_depth": run.tree_depth,
        "step_size": run.step_size,
        "predictive_variance": var.tolist(),
    }
    if reference is not None:
        ref_var = reference.probs.reshape(-1, reference.probs.shape[-1]).var(axis=0)
        row["pearson_vs_numpyro"] = float(stats.pearsonr(var, ref_var)[0])
        row["spearman_vs_numpyro"] = float(stats.spearmanr(var, ref_var)[0])
    return row


def cpu_name() -> str:
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        return next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=1000, help="NumPyro's and gnuq default's")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated")
    parser.add_argument("--out", default="figures/mcmc/numpyro.json")
    args = parser.parse_args()

    problem = problems.get("xor")
    x, y = problem.sample(jax.random.key(0), 500)
    model = models.mlp(jax.random.key(1), 2, (32, 32), 1, "tanh")
    lik = likelihoods.get("bernoulli")
    fit = train.fit_map(model.apply, lik, model.params, x, y, train.MapConfig())
    grid = problem.grid(16)  # 256 inputs over the box
    base = mcmc.McmcConfig(
        num_warmup=args.warmup, num_samples=args.samples, chain_method="devices", progress=False
    )
    setup = {
        "apply": model.apply,
        "lik": lik,
        "x": x,
        "y": y,
        "map": fit.params,
        "num_chains": base.num_chains,
        "init": mcmc.initial_positions(jax.random.key(2), fit.params, base, 1.0),
        "predict": jax.jit(jax.vmap(jax.vmap(lambda p: lik.predict(model.apply(p, grid))[:, 0]))),
    }
    setup["predict"] = (lambda f: lambda p: np.asarray(f(p), np.float64))(setup["predict"])
    print(
        f"{jax.device_count()} {jax.devices()[0].platform} devices ({cpu_name()}"
        f", {os.cpu_count()} cores), {models.count_params(model.params)} parameters, N = {len(x)}"
        f", {base.num_chains} chains, {args.samples} samples; MAP ||grad U|| {fit.grad_norm:.1e}",
        flush=True,
    )

    numpyro_run = run_numpyro(setup, args.warmup, args.samples)
    rows = {"numpyro": summary(numpyro_run, None) | {"num_warmup": args.warmup}}
    header = (
        f"{'sampler':<27} {'wall s':>7} {'grads':>9} {'min ESS':>8} {'ESS/s':>6} {'ratio':>6}"
        f" {'/grad':>6} {'R-hat':>6} {'div':>4} {'depth':>5} {'r':>6} {'rho':>6}"
    )
    print(header + "\n" + "-" * len(header), flush=True)

    def show(name: str, row: dict) -> None:
        ratio = row["ess_per_s"] / rows["numpyro"]["ess_per_s"]
        row["ratio_vs_numpyro"] = ratio
        per_grad = row["ess_per_1k_grads"] / rows["numpyro"]["ess_per_1k_grads"]
        row["ess_per_grad_ratio_vs_numpyro"] = per_grad
        r, rho = row.get("pearson_vs_numpyro", 1.0), row.get("spearman_vs_numpyro", 1.0)
        print(
            f"{name:<27} {row['wall_s']:7.1f} {row['grads']:9.0f} {row['ess_min']:8.0f} "
            f"{row['ess_per_s']:6.1f} {ratio:6.2f} {per_grad:6.2f} {row['rhat_max']:6.3f} "
            f"{row['divergences']:4d} {row['mean_tree_depth']:5.2f} {r:6.3f} {rho:6.3f}",
            flush=True,
        )

    show("numpyro", rows["numpyro"])
    for name in args.candidates.split(","):
        changes = CANDIDATES[name]
        config = dataclasses.replace(base, **changes)
        rows[name] = summary(run_gnuq(setup, config), numpyro_run) | {
            "config": {k: getattr(config, k) for k in ("num_warmup", "max_tree_depth")}
        }
        show(name, rows[name])

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "mcmc_numpyro",
        "git_commit": commit,
        "machine": {"processor": cpu_name(), "cpus": os.cpu_count()},
        "setting": {
            "problem": "xor",
            "n_train": len(x),
            "model": "mlp 2-32-32-1 tanh",
            "n_params": models.count_params(model.params),
            "prior_precision": 1.0,
            "num_chains": base.num_chains,
            "num_samples": args.samples,
            "ess": "min bulk ESS of p(x) at 256 grid inputs",
        },
        "samplers": rows,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
