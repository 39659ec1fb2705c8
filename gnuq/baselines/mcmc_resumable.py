"""The NUTS reference for models too large to keep their draws: streamed and resumable.

``gnuq.mcmc.reference`` keeps every draw of every parameter (4 chains x 1 000 draws of a
1 065 012-parameter MLP would be 17 GB). ``reference`` here runs the same sampler (the same
potential ``mcmc.log_posterior``, the initialisation, window adaptation and NUTS kernel of
``gnuq.baselines.sampler``, the gate of ``mcmc.finish_reference``) but keeps only

- the predictive moments over the evaluation inputs, merged segment by segment in float64
  (``gnuq.baselines.moments``): Var_s[p_k(x | theta_s)] and E_s[p_k (1 - p_k)] (for a Gaussian
  likelihood Var_s[f(x | theta_s)] and the noise variance, as in ``gnuq.mcmc``);
- traces for the diagnostics: the predictions at ``diagnostic_inputs`` evenly spaced evaluation
  inputs and ``param_subset`` parameters drawn once at random (parameter R-hat and ESS are those of
  that subset, and say so), plus divergences, acceptance and leapfrog counts.

Sampling runs in segments of ``segment`` transitions. After the warm-up of each chain group and
after every segment, the chain states, the tuned step sizes and mass matrices, the traces and the
moments so far are written atomically to ``checkpoint``; a rerun with the same arguments resumes
from there. Segment s of chain c always uses ``fold_in(key_c, s)``, and segments are merged in a
fixed order, so an interrupted and resumed run gives exactly the numbers of an uninterrupted one.
"""

import dataclasses
import pathlib
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gnuq import checkpoint as ckpt_io
from gnuq import likelihoods
from gnuq.baselines import sampler
from gnuq.baselines.diagnostics import diagnostic_indices
from gnuq.baselines.mcmc import Reference, finish_reference, log_posterior
from gnuq.baselines.moments import Moments, draw_moments, merge_moments
from gnuq.baselines.sampler import Chains, McmcConfig
from gnuq.types import ApplyFn, Array, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """How the streamed reference runs (settings that do not change the draws)."""

    segment: int = 100  # transitions between checkpoints
    param_subset: int = 1000  # parameters whose traces the diagnostics read

    def __post_init__(self):
        for name in ("segment", "param_subset"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def reference(
    key: PRNGKey,
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    x_train: Array,
    y_train: Array,
    map_params: Params,
    x_eval: Array,
    prior_precision: float,
    config: McmcConfig,
    stream: StreamConfig = StreamConfig(),
    checkpoint: str | pathlib.Path | None = None,
    log: Callable[[str], None] = print,
) -> Reference:
    """Predictive moments on ``x_eval`` (``[N, K]``) under the NUTS posterior, with diagnostics.

    Same potential, initial positions and warm-up as ``gnuq.mcmc.reference``, but no draw is
    stored; ``Reference.chains.positions`` holds the traces of the parameter subset
    ``[chains, samples, param_subset]``. ``checkpoint`` (a ``.npz`` path) makes the run resumable.
    """
    logdensity = log_posterior(apply_fn, likelihood, x_train, y_train, prior_precision)
    flat_map, _ = ravel_pytree(map_params)
    n_params = flat_map.size
    # a third key picks the traced parameters; chain c samples with split(k_sample, chains)[c],
    # as in ``sampler.sample``
    k_init, k_sample, k_subset = jax.random.split(key, 3)
    subset = np.sort(
        np.asarray(
            jax.random.choice(
                k_subset, n_params, (min(stream.param_subset, n_params),), replace=False
            )
        )
    )
    diag_idx = diagnostic_indices(len(x_eval), config.diagnostic_inputs)
    chain_keys = jax.random.split(k_sample, config.num_chains)
    algorithm, extra = sampler.algorithm_and_extra(config)
    warm = sampler.warmup_program(logdensity, config)

    def warm_chain(key, position):
        state, tuned, steps = warm(jax.random.split(key)[0], position)
        return state, tuned["step_size"], tuned["inverse_mass_matrix"], steps

    def segment_chain(key, index, state, step_size, inverse_mass_matrix):
        kernel = algorithm(
            logdensity, step_size=step_size, inverse_mass_matrix=inverse_mass_matrix, **extra
        ).step
        keys = jax.random.split(jax.random.fold_in(jax.random.split(key)[1], index), stream.segment)

        def step(state, k):
            state, info = kernel(k, state)
            probs = likelihood.predict(apply_fn(state.position, x_eval))
            trace = ravel_pytree(state.position)[0][subset]
            out = (probs, trace, info.is_divergent, info.acceptance_rate)
            return state, (*out, info.num_integration_steps)

        return jax.lax.scan(step, state, keys)

    method, groups, run_warm = sampler.chain_groups(warm_chain, config)
    _, _, run_segment = sampler.chain_groups(segment_chain, config)
    n_segments = -(-config.num_samples // stream.segment)
    ckpt = pathlib.Path(checkpoint) if checkpoint is not None else None
    # what the checkpoint's layout and draws depend on; a checkpoint written otherwise is stale
    group_of = [g for g, group in enumerate(groups) for _ in group]  # chains run together
    sizes = [config.num_chains, config.num_warmup, config.num_samples, stream.segment, len(subset)]
    layout = np.asarray([*sizes, *group_of])
    saved = None if ckpt is None else ckpt_io.load(ckpt)
    if saved is not None and not np.array_equal(saved.get("layout"), layout):
        warnings.warn(
            f"checkpoint {ckpt} was written with other chain, grouping or segment settings; "
            "starting afresh",
            stacklevel=2,
        )
        saved = None
    if saved is None:
        saved = {
            "warmed": np.zeros(config.num_chains, bool),  # warm-up done, per chain
            "done": np.zeros(config.num_chains, int),  # segments sampled, per chain
            "layout": layout,
        }
    else:
        saved = {k: v.copy() for k, v in saved.items()}  # writable
        log(f"resuming from {ckpt.name}: {int(saved['done'].min())}/{n_segments} segments done")
    # the NUTS state's structure, to rebuild it from the checkpoint's flat arrays
    template = jax.eval_shape(lambda p: algorithm.init(p, logdensity), map_params)

    init = sampler.initial_positions(k_init, map_params, config, prior_precision)
    start, grads = time.monotonic(), 0
    for group in groups:
        idx = np.asarray(group)
        if saved["warmed"][idx].all():
            continue
        state, step_size, imm, steps = run_warm(
            chain_keys[idx], jax.tree.map(lambda a, i=idx: a[i], init)
        )
        tuned = {"step_size": step_size, "inverse_mass_matrix": imm, "warmup_steps": steps}
        _put(saved, idx, ckpt_io.tree_to_arrays(state, "state") | tuned, config.num_chains)
        saved["warmed"][idx] = True
        grads += int(np.sum(steps))
        _save(ckpt, saved)
        log(f"warm-up of chains {group} done ({method}; {_rate(grads, start)})")

    todo = [(s, g) for s in range(n_segments) for g in groups if (saved["done"][g] <= s).any()]
    sampling_start = time.monotonic()  # the ETA extrapolates sampling, not the warm-up
    for i, (s, group) in enumerate(todo, 1):
        idx = np.asarray(group)
        state = ckpt_io.arrays_to_tree(
            {k: v[idx] for k, v in saved.items() if k.startswith("state")}, template, "state"
        )
        state, out = run_segment(
            chain_keys[idx],
            jnp.full(len(idx), s),
            jax.tree.map(jnp.asarray, state),
            jnp.asarray(saved["step_size"][idx]),
            jnp.asarray(saved["inverse_mass_matrix"][idx]),
        )
        first, last = s * stream.segment, min((s + 1) * stream.segment, config.num_samples)
        probs, trace, div, acc, n_steps = (np.asarray(a)[:, : last - first] for a in out)
        traces = {
            "preds": probs[:, :, diag_idx].reshape(*probs.shape[:2], -1),
            "trace": trace,
            "divergent": div,
            "acceptance_rate": acc,
            "num_steps": n_steps,
        }
        for name, value in traces.items():
            if name not in saved:
                shape = (config.num_chains, config.num_samples, *value.shape[2:])
                saved[name] = np.zeros(shape, value.dtype)
            saved[name][idx, first:last] = value
        _put(saved, idx, ckpt_io.tree_to_arrays(state, "state"), config.num_chains)
        _merge_draws(saved, probs)
        saved["done"][idx] = s + 1
        grads += int(n_steps.sum())
        _save(ckpt, saved)
        elapsed = time.monotonic() - sampling_start
        log(
            f"segment {s + 1}/{n_segments} of chains {group} ({_rate(grads, start)}; "
            f"ETA {elapsed / i * (len(todo) - i):.0f} s)"
        )

    chains = Chains(
        positions={"subset": saved["trace"]},
        divergent=saved["divergent"],
        acceptance_rate=saved["acceptance_rate"],
        num_steps=saved["num_steps"],
        step_size=saved["step_size"],
        warmup_steps=saved["warmup_steps"],
    )
    moments = _moments(saved)
    return finish_reference(
        likelihood, moments.mean, moments.variance, moments.ale, chains, saved["preds"], config
    )


def _rate(grads: int, start: float) -> str:
    return f"{grads / max(time.monotonic() - start, 1e-9):.0f} gradients/s"


def _put(saved: dict, idx: np.ndarray, arrays: dict, num_chains: int) -> None:
    """Write per-chain arrays (leading axis = the chains ``idx``) into their chain slots."""
    for name, value in arrays.items():
        value = np.asarray(value)
        if name not in saved:
            saved[name] = np.zeros((num_chains, *value.shape[1:]), value.dtype)
        saved[name][idx] = value


def _moments(saved: dict) -> Moments:
    """The predictive moments merged so far, held in the checkpoint under their field names."""
    count, *arrays = (saved[k] for k in Moments._fields)
    return Moments(count.item(), *arrays)


def _merge_draws(saved: dict, probs: np.ndarray) -> None:
    """Merge draws ``[chains, draws, N, K]`` into the float64 predictive moments."""
    draws = np.asarray(probs, np.float64).reshape(-1, *probs.shape[2:])
    previous = _moments(saved) if "count" in saved else None
    merged = merge_moments(previous, draw_moments(draws))
    saved.update({k: np.asarray(v) for k, v in merged._asdict().items()})


def _save(path: pathlib.Path | None, saved: dict) -> None:
    if path is not None:
        ckpt_io.save(path, saved)
