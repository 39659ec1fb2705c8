"""The sampler: BlackJAX NUTS (or HMC) chains with window adaptation, as pure pieces.

``sample(key, logdensity_fn, positions, config)`` warms up and samples ``config.num_chains``
chains of any log density over a params pytree: Stan-style window adaptation (dual-averaging
step size + diagonal mass matrix), then the kernel, both inside ``lax.scan`` under ``jit``.
``warmup_program``, ``algorithm_and_extra`` and ``chain_groups`` are the parts the streamed
reference (``gnuq.mcmc_resumable``) reuses to run the same chains in segments.

Chains (``chain_method``):
- ``"sequential"``: one compiled chain run chain after chain (fastest on a CPU: vmapped NUTS
  chains advance in lock-step at the deepest tree of any chain);
- ``"vmap"``: all chains in one vmapped program (right for a GPU);
- ``"devices"``: chains spread over ``jax.devices()`` with ``pmap`` (several CPU host devices via
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set before JAX is imported);
- ``"auto"``: ``devices`` when there are several, else ``vmap`` on an accelerator and
  ``sequential`` on a CPU.
"""

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.base import get_filter_adapt_info_fn
from tqdm.auto import tqdm

from gnuq.types import Array, Params, PRNGKey

ALGORITHMS = ("nuts", "hmc")
CHAIN_METHODS = ("auto", "sequential", "vmap", "devices")
INITS = ("map", "prior")
MIN_SAMPLES = 4  # split R-hat and bulk ESS halve each chain and need 2 draws per half


@dataclasses.dataclass(frozen=True)
class McmcConfig:
    """Sampler settings (the ``mcmc`` section of the experiment TOMLs)."""

    algorithm: str = "nuts"
    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    num_integration_steps: int = 16  # hmc only
    max_tree_depth: int = 10  # nuts only
    target_acceptance_rate: float = 0.8
    init: str = "map"  # "map": MAP + init_jitter * N(0, I); "prior": a draw from the prior
    init_jitter: float = 0.01
    chain_method: str = "auto"
    max_rhat: float = 1.01
    min_ess: float = 400.0
    max_divergences: int = 0
    diagnostic_inputs: int = 256  # evaluation inputs whose predictions are diagnosed
    # which quantities the R-hat / ESS gate reads: "all" (parameters and predictions) or
    # "predictive" (predictions only; parameters are still reported). MLP parameters are not
    # identifiable (weakly determined hidden units drift along prior-only directions) while the
    # predictions the experiments use are; function-space R-hat is the usual BNN check.
    gate: str = "all"
    sample_chunk: int = 100  # samples per chunk of the streaming moments
    # blocks of consecutive draws per chain whose moments are kept apart: resampling them gives
    # the reference's Monte Carlo error (``moments.block_bootstrap``)
    moment_blocks: int = 10
    progress: bool = True

    def __post_init__(self):
        for name, allowed in [
            ("algorithm", ALGORITHMS),
            ("chain_method", CHAIN_METHODS),
            ("init", INITS),
            ("gate", ("all", "predictive")),
        ]:
            if getattr(self, name) not in allowed:
                raise ValueError(f"mcmc.{name}={getattr(self, name)!r}; choose one of {allowed}")
        # refused now rather than failing after the sampling they would waste
        for name in ("num_warmup", "num_chains", "num_integration_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"mcmc.{name} must be at least 1, got {getattr(self, name)}")
        if self.num_samples < MIN_SAMPLES:
            raise ValueError(
                f"mcmc.num_samples must be at least {MIN_SAMPLES}, got {self.num_samples}: "
                "split R-hat and bulk ESS halve each chain and need 2 draws per half"
            )
        if self.sample_chunk < 1:
            raise ValueError(
                f"mcmc.sample_chunk (samples per chunk of the streaming moments) must be at "
                f"least 1, got {self.sample_chunk}; the default is 100"
            )
        if not 1 <= self.moment_blocks <= self.num_samples:
            raise ValueError(
                f"mcmc.moment_blocks (blocks of consecutive draws per chain) must lie between 1 "
                f"and num_samples = {self.num_samples}, got {self.moment_blocks}; the default "
                "is 10"
            )
        if self.diagnostic_inputs < 1:
            raise ValueError(
                f"mcmc.diagnostic_inputs (evaluation inputs whose predictions the gate reads) "
                f"must be at least 1, got {self.diagnostic_inputs}; the default is 256"
            )
        if self.num_chains < 2:
            warnings.warn("one chain: R-hat can only see within-chain drift", stacklevel=2)
        if not 0 < self.target_acceptance_rate < 1:
            raise ValueError("mcmc.target_acceptance_rate must lie in (0, 1)")


class Chains(NamedTuple):
    """Posterior draws: ``positions`` leaves are ``[chains, samples, *param.shape]``."""

    positions: Params
    divergent: Array  # [chains, samples] bool
    acceptance_rate: Array  # [chains, samples]
    num_steps: Array  # [chains, samples] leapfrog steps (gradient evaluations) per transition
    step_size: Array  # [chains] adapted step size
    warmup_steps: Array  # [chains] leapfrog steps spent in warm-up


# ---------------------------------------------------------------------------------------------
# sampling


def initial_positions(
    key: PRNGKey, map_params: Params, config: McmcConfig, prior_precision: float
) -> Params:
    """``[chains, ...]`` starting points: MAP + jitter, or draws from the N(0, 1/lambda) prior."""
    leaves, treedef = jax.tree.flatten(map_params)
    keys = jax.random.split(key, len(leaves))
    shape = (config.num_chains,)
    if config.init == "map":
        out = [
            leaf + config.init_jitter * jax.random.normal(k, shape + leaf.shape, leaf.dtype)
            for leaf, k in zip(leaves, keys, strict=True)
        ]
    else:
        scale = 1.0 / math.sqrt(prior_precision)
        out = [
            scale * jax.random.normal(k, shape + leaf.shape, leaf.dtype)
            for leaf, k in zip(leaves, keys, strict=True)
        ]
    return jax.tree.unflatten(treedef, out)


def sample(key: PRNGKey, logdensity_fn, positions: Params, config: McmcConfig) -> Chains:
    """Warm up and sample ``config.num_chains`` chains from ``logdensity_fn``.

    ``positions`` leaves are ``[chains, ...]``. Chain i uses ``jax.random.split(key, chains)[i]``
    whatever ``chain_method``, so the methods draw the same chains.
    """
    keys = jax.random.split(key, config.num_chains)
    total = config.num_warmup + config.num_samples
    offset = 0  # steps of the chain groups run before this one: the bar counts all groups

    def report(step: Array) -> None:  # called from inside the compiled chain
        # update() honours tqdm's mininterval, so logs stay short
        bar.update(max(0, offset + int(np.max(step)) - bar.n))

    method, groups, run = chain_groups(_chain_program(logdensity_fn, config, report), config)
    bar = tqdm(
        total=total * len(groups),
        desc=f"{config.algorithm} {config.num_chains} chains ({method})",
        disable=not config.progress,
        leave=False,
        mininterval=2.0,
    )
    outputs = []
    for g, group in enumerate(groups):
        offset = g * total
        idx = np.asarray(group)
        out = run(keys[idx], jax.tree.map(lambda a, i=idx: a[i], positions))
        jax.block_until_ready(out)
        bar.update((g + 1) * total - bar.n)
        outputs.append(out)
    bar.close()
    return jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *outputs)


def chain_groups(one_chain, config: McmcConfig) -> tuple[str, list[list[int]], object]:
    """How ``config.num_chains`` chains of ``one_chain`` run: ``(method, groups, run)``.

    ``run`` takes the arguments of one group with a leading chain axis and returns its outputs
    likewise; ``groups`` lists the chain indices of each call.
    """
    method = resolve_chain_method(config.chain_method)
    if method == "sequential":
        single = jax.jit(one_chain)

        def run(*args):
            out = single(*jax.tree.map(lambda a: a[0], args))
            return jax.tree.map(lambda a: a[None], out)

        return method, [[i] for i in range(config.num_chains)], run
    if method == "vmap":
        return method, [list(range(config.num_chains))], jax.jit(jax.vmap(one_chain))
    n_dev = jax.local_device_count()
    groups = [
        list(range(i, min(i + n_dev, config.num_chains)))
        for i in range(0, config.num_chains, n_dev)
    ]
    return method, groups, jax.pmap(one_chain)


def resolve_chain_method(method: str) -> str:
    if method != "auto":
        if method == "devices" and jax.local_device_count() < 2:
            warnings.warn(
                "chain_method='devices' with a single device runs chains one at a time",
                stacklevel=3,
            )
        return method
    if jax.local_device_count() > 1:
        return "devices"
    return "sequential" if jax.default_backend() == "cpu" else "vmap"


def algorithm_and_extra(config: McmcConfig) -> tuple[object, dict]:
    """The BlackJAX algorithm of ``config`` and its fixed keyword arguments."""
    if config.algorithm == "nuts":
        return blackjax.nuts, {"max_num_doublings": config.max_tree_depth}
    return blackjax.hmc, {"num_integration_steps": config.num_integration_steps}


def warmup_program(logdensity_fn, config: McmcConfig):
    """``(key, position) -> (state, tuned, warmup leapfrog steps)`` for one chain: window
    adaptation of the step size and a diagonal mass matrix; ``tuned`` holds every keyword of
    the algorithm (``step_size``, ``inverse_mass_matrix`` and the fixed ones)."""
    algorithm, extra = algorithm_and_extra(config)

    def warm(key: PRNGKey, position: Params):
        warmup = blackjax.window_adaptation(
            algorithm,
            logdensity_fn,
            target_acceptance_rate=config.target_acceptance_rate,
            # keep only the leapfrog counts of the warm-up, not its per-step states
            adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
            **extra,
        )
        (state, tuned), info = warmup.run(key, position, num_steps=config.num_warmup)
        return state, tuned, jnp.sum(info.info.num_integration_steps)

    return warm


def _chain_program(logdensity_fn, config: McmcConfig, report: Callable[[Array], None]):
    """``(key, position) -> Chains`` for one chain (no leading chain axis); ``report(step)``
    hears the transitions done about 50 times per chain (a progress bar)."""
    algorithm, _ = algorithm_and_extra(config)
    warm = warmup_program(logdensity_fn, config)
    every = max(1, config.num_samples // 50)

    def one_chain(key: PRNGKey, position: Params) -> Chains:
        k_warm, k_sample = jax.random.split(key)
        state, tuned, warm_steps = warm(k_warm, position)
        kernel = algorithm(logdensity_fn, **tuned).step  # tuned includes extra

        def step(state, xs):
            i, k = xs
            state, info = kernel(k, state)
            jax.lax.cond(
                i % every == every - 1,
                lambda: jax.debug.callback(report, config.num_warmup + i + 1),
                lambda: None,
            )
            out = (state.position, info.is_divergent, info.acceptance_rate)
            return state, (*out, info.num_integration_steps)

        steps = (jnp.arange(config.num_samples), jax.random.split(k_sample, config.num_samples))
        _, (pos, div, acc, n_steps) = jax.lax.scan(step, state, steps)
        return Chains(pos, div, acc, n_steps, tuned["step_size"], warm_steps)

    return one_chain
