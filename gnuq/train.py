"""MAP training: full-batch optax on exactly the negative log posterior that MCMC samples.

    U(theta) = sum_n nll(y_n | f(x_n; theta)) + prior_precision / 2 * ||theta||^2

Weight decay is the isotropic Gaussian prior N(0, prior_precision^-1 I); the same ``U`` (from
``neg_log_posterior``) is the potential energy of the HMC/NUTS reference and the base of the
Laplace precision, so the three never disagree about the model.

Optimisation: Adam for ``adam_steps`` (robust from a random start), then L-BFGS with a zoom line
search until ||grad U|| <= ``grad_tol`` (a MAP that Laplace can trust), at most ``lbfgs_steps``.

``finetune`` is the other regime: a pretrained model too large for full-batch L-BFGS, trained as
such models are (AdamW on mini-batches for a few epochs, checkpointed after every epoch).
"""

import dataclasses
import functools
import pathlib
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from gnuq import checkpoint as ckpt_io
from gnuq import likelihoods
from gnuq.types import ApplyFn, Array, Params, PRNGKey


@functools.lru_cache(maxsize=64)  # the same model gives the same function: jit caches hit
def neg_log_posterior(
    apply_fn: ApplyFn, likelihood: likelihoods.Likelihood, prior_precision: float
) -> Callable[[Params, Array, Array], Array]:
    """``U(params, x, y)``: summed NLL plus the Gaussian prior's ``prior_precision/2 ||theta||^2``.

    Constants of the prior's normaliser are dropped (they do not move the MAP or the posterior).
    """
    if not prior_precision > 0:
        raise ValueError(f"prior_precision must be positive, got {prior_precision}")

    def potential(params: Params, x: Array, y: Array) -> Array:
        sq = sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(params))
        return jnp.sum(likelihood.nll(apply_fn(params, x), y)) + 0.5 * prior_precision * sq

    return potential


@dataclasses.dataclass(frozen=True)
class MapConfig:
    """Settings of ``fit_map`` (a config section of the same name in the experiment TOMLs)."""

    prior_precision: float = 1.0
    adam_steps: int = 2000
    learning_rate: float = 0.01
    lbfgs_steps: int = 10000
    grad_tol: float = 1e-3


class MapResult(NamedTuple):
    params: Params
    loss: float  # U at the returned params
    grad_norm: float  # ||grad U|| at the returned params
    steps: int  # optimiser steps taken (Adam + L-BFGS)
    converged: bool  # grad_norm <= grad_tol


def fit_map(
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    params: Params,
    x: Array,
    y: Array,
    config: MapConfig = MapConfig(),
) -> MapResult:
    """Minimise ``neg_log_posterior`` from ``params``; warns when ``grad_tol`` was not reached.

    Deterministic: full batch, no randomness beyond the initial ``params`` the caller drew.
    """
    likelihoods.check_data(likelihood, x, y)
    potential = neg_log_posterior(apply_fn, likelihood, config.prior_precision)
    params, loss, gnorm, steps = _optimise(potential, params, x, y, config)
    result = MapResult(
        params, float(loss), float(gnorm), int(steps), bool(gnorm <= config.grad_tol)
    )
    if not jnp.isfinite(result.loss):
        raise FloatingPointError(
            "MAP training diverged (non-finite loss); lower map.learning_rate or raise "
            "map.prior_precision"
        )
    if not result.converged:
        warnings.warn(
            f"MAP did not converge: ||grad U|| = {result.grad_norm:.3g} > grad_tol = "
            f"{config.grad_tol:g} after {result.steps} steps; raise map.lbfgs_steps or "
            "map.grad_tol",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


@jax.jit(static_argnames=("potential", "config"))
def _optimise(potential, params, x, y, config: MapConfig):
    def value(p):
        return potential(p, x, y)

    adam = optax.adam(config.learning_rate)

    def adam_step(carry, _):
        p, state = carry
        g = jax.grad(value)(p)
        updates, state = adam.update(g, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(adam_step, (params, adam.init(params)), length=config.adam_steps)

    lbfgs = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(value)

    def lbfgs_step(carry):
        p, state, _ = carry
        v, g = value_and_grad(p, state=state)
        updates, state = lbfgs.update(g, state, p, value=v, grad=g, value_fn=value)
        p = optax.apply_updates(p, updates)
        return p, state, otu.tree_norm(otu.tree_get(state, "grad"))

    def keep_going(carry):
        _, state, gnorm = carry
        count = otu.tree_get(state, "count")
        return (count < config.lbfgs_steps) & (gnorm > config.grad_tol) & jnp.isfinite(gnorm)

    gnorm0 = otu.tree_norm(jax.grad(value)(params))
    params, state, _ = jax.lax.while_loop(
        keep_going, lbfgs_step, (params, lbfgs.init(params), gnorm0)
    )
    loss, grad = jax.value_and_grad(value)(params)
    return params, loss, otu.tree_norm(grad), config.adam_steps + otu.tree_get(state, "count")


# ---------------------------------------------------------------------------------------------
# mini-batch fine-tuning (a pretrained encoder: too large for full-batch L-BFGS)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """AdamW on the mean NLL of shuffled mini-batches, learning rate warmed up linearly over
    ``warmup_fraction`` of the steps, then decayed linearly to 0.

    Decoupled weight decay ``weight_decay`` on every parameter; as a Gaussian prior on the
    summed NLL of N examples it corresponds to precision ``N * weight_decay``.
    """

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1


class FinetuneResult(NamedTuple):
    params: Params
    losses: Array  # [epochs] mean training NLL over each epoch's batches


def finetune(
    apply_fn: ApplyFn,
    likelihood: likelihoods.Likelihood,
    params: Params,
    x: Array,
    y: Array,
    key: PRNGKey,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    checkpoint: str | pathlib.Path | None = None,
    log: Callable[[str], None] = print,
) -> FinetuneResult:
    """Fine-tune ``params`` on ``(x, y)``; epoch e's order is a permutation drawn from
    ``fold_in(key, e)``, so a run resumed from ``checkpoint`` (written atomically after every
    epoch) ends with the same parameters as an uninterrupted one."""
    n = x.shape[0]
    if n != y.shape[0]:
        raise ValueError(f"x has {n} rows but y has {y.shape[0]}")
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError("finetune: epochs and batch_size must be at least 1")
    per_epoch = -(-n // config.batch_size)
    total = config.epochs * per_epoch
    warmup = int(config.warmup_fraction * total)
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(0.0, config.learning_rate, max(warmup, 1)),
            optax.linear_schedule(config.learning_rate, 0.0, total - warmup),
        ],
        [warmup],
    )
    opt = optax.adamw(schedule, weight_decay=config.weight_decay)
    state = opt.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        def loss(p):
            return jnp.mean(likelihood.nll(apply_fn(p, xb), yb))

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    losses: list[float] = []
    saved = ckpt_io.load(checkpoint) if checkpoint is not None else None
    if saved is not None:
        params = ckpt_io.arrays_to_tree(saved, params, "params")
        state = ckpt_io.arrays_to_tree(saved, state, "state")
        losses = saved["losses"].tolist()
        log(f"resumed fine-tuning after epoch {len(losses)}")
    for epoch in range(len(losses), config.epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        epoch_losses = []
        for i in range(per_epoch):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            params, state, value = step(params, state, x[idx], y[idx])
            epoch_losses.append(float(value))
        if not np.all(np.isfinite(epoch_losses)):
            raise FloatingPointError(
                f"fine-tuning diverged in epoch {epoch + 1} (non-finite loss); lower the "
                "learning rate"
            )
        losses.append(float(np.mean(epoch_losses)))
        if checkpoint is not None:
            arrays = ckpt_io.tree_to_arrays(params, "params") | ckpt_io.tree_to_arrays(
                state, "state"
            )
            ckpt_io.save(checkpoint, arrays | {"losses": np.asarray(losses)})
        log(f"epoch {epoch + 1}/{config.epochs}: mean training NLL {losses[-1]:.4f}")
    return FinetuneResult(params, jnp.asarray(losses))
