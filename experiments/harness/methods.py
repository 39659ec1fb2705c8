"""The registry of estimators and baselines that are measured against the reference posterior.

A method is one function of a ``Fit`` (a trained model, its data and the evaluation inputs)
returning ``[N, K]`` values, registered once with the quantity it estimates and the likelihoods it
applies to. Every experiment that compares with a reference computes the applicable methods in
registration order and correlates each with the reference; each method that is not the paper's
estimator (``point=True``) is also correlated with it ("GN-vs-LA"). The tables list the same
methods, so a registered baseline appears in every applicable table with no other change.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import gnuq
from gnuq import likelihoods, stats
from gnuq.baselines import laplace

QUANTITIES = ("epistemic", "aleatoric")
CLASSIFICATION = ("bernoulli", "categorical")


@dataclasses.dataclass
class Fit:
    """One trained model: what every method may read. ``shared`` keeps what two methods share
    (a Laplace posterior, say) so that it is computed once per fit."""

    apply: Callable
    params: Any
    x: Any  # training inputs
    y: Any  # training targets
    grid: Any  # evaluation inputs [N, ...]
    likelihood: likelihoods.Likelihood
    prior_precision: float
    key: jax.Array  # for the methods that sample
    n_params: int
    la_max_full_params: int = 20_000  # above: KFAC instead of the full GGN
    la_samples: int = 1000  # draws from the Laplace posterior for its aleatoric estimate
    shared: dict = dataclasses.field(default_factory=dict)

    def once(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self.shared:
            self.shared[name] = make()
        return self.shared[name]

    def as_2d(self, values) -> np.ndarray:
        return np.asarray(values).reshape(len(self.grid), -1)


@dataclasses.dataclass(frozen=True)
class Method:
    name: str  # as the tables and records name it
    quantity: str  # "epistemic" or "aleatoric"
    tasks: tuple[str, ...]  # the likelihoods it applies to
    compute: Callable[[Fit], np.ndarray]  # -> [N, K]
    point: bool = False  # the paper's estimator: every other method is also compared with it

    @property
    def array(self) -> str:
        """The name a unit stores its values under."""
        return f"{self.quantity}/{self.name}"


REGISTRY: dict[str, Method] = {}


def register(name: str, quantity: str, tasks: tuple[str, ...], point: bool = False):
    """Decorator: register ``fn(fit) -> [N, K]`` as the method ``name``."""
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity {quantity!r}: choose one of {QUANTITIES}")

    def add(fn: Callable[[Fit], np.ndarray]) -> Callable[[Fit], np.ndarray]:
        key = f"{quantity}/{name}"
        if key in REGISTRY:
            raise ValueError(f"method {name!r} is already registered for the {quantity}")
        REGISTRY[key] = Method(name, quantity, tuple(tasks), fn, point)
        return fn

    return add


def applicable(task: str, quantity: str) -> list[Method]:
    """The methods for a likelihood and quantity, the paper's estimator first."""
    found = [m for m in REGISTRY.values() if m.quantity == quantity and task in m.tasks]
    return sorted(found, key=lambda m: not m.point)


def comparisons(task: str, quantity: str) -> list[tuple[str, str, str]]:
    """``(record name, array, against)``: each method against the reference, then every other
    method against the paper's estimator; the arrays are ``Method.array`` names and
    ``"reference"``."""
    found = applicable(task, quantity)
    point = [m for m in found if m.point]
    rows = [(m.name, m.array, "reference") for m in found]
    rows += [
        (f"{p.name}-vs-{m.name}", p.array, m.array) for p in point for m in found if not m.point
    ]
    return rows


def table_columns(task: str, quantity: str) -> list[str]:
    return [name for name, _, _ in comparisons(task, quantity)]


def compute_all(fit: Fit, task: str) -> dict[str, np.ndarray]:
    """``{Method.array: [N, K]}`` of every method applicable to ``task``."""
    return {m.array: fit.as_2d(m.compute(fit)) for q in QUANTITIES for m in applicable(task, q)}


# ---------------------------------------------------------------------------------------------
# the paper's estimators


def gradient_norms(fit: Fit) -> gnuq.Uncertainty:
    """``gnuq.uncertainty`` at the MAP over the grid (epistemic, aleatoric and probs)."""
    noise = fit.likelihood.noise_var
    return fit.once(
        "gn",
        lambda: gnuq.uncertainty(
            fit.apply, fit.params, fit.grid, likelihood=fit.likelihood.name, noise_var=noise
        ),
    )


@register("GN", "epistemic", (*CLASSIFICATION, "gaussian"), point=True)
def gradient_norm(fit: Fit) -> np.ndarray:
    """||grad_theta p_k(x)||^2 (or ||grad_theta f(x)||^2), the paper's Eq. 4."""
    return gradient_norms(fit).epistemic


@register("PE", "aleatoric", CLASSIFICATION, point=True)
def point_estimate(fit: Fit) -> np.ndarray:
    """p_k(x)(1 - p_k(x)) at the MAP, the paper's Eq. 8."""
    return gradient_norms(fit).aleatoric


# ---------------------------------------------------------------------------------------------
# Laplace baselines


def la_structure(fit: Fit) -> str:
    return "full" if fit.n_params <= fit.la_max_full_params else "kfac"


def _posterior(fit: Fit, structure: str) -> laplace.Posterior:
    return fit.once(
        f"posterior/{structure}",
        lambda: laplace.laplace_posterior(
            fit.apply, fit.params, fit.x, fit.y, fit.likelihood, fit.prior_precision,
            structure=structure,
        ),
    )  # fmt: skip


@register("LA", "epistemic", (*CLASSIFICATION, "gaussian"))
def la_epistemic(fit: Fit) -> np.ndarray:
    """g^T (GGN + lambda I)^-1 g, the full GGN where it fits (else KFAC)."""
    post = _posterior(fit, la_structure(fit))
    return laplace.linearised_epistemic(fit.apply, fit.params, fit.grid, fit.likelihood, post)


def _sampled(fit: Fit):
    post = _posterior(fit, la_structure(fit))
    return fit.once(
        "la_sampled",
        lambda: laplace.sampled_moments(
            fit.key, fit.apply, fit.params, fit.grid, fit.likelihood, post, fit.la_samples
        ),
    )


@register("LA", "aleatoric", CLASSIFICATION)
def la_aleatoric(fit: Fit) -> np.ndarray:
    """E[p_k (1 - p_k)] over theta ~ N(theta*, Sigma_LA) through the network (the paper's
    "Laplace aleatoric", Table 6)."""
    return _sampled(fit)[2]


def records(task: str, arrays: dict[str, np.ndarray], base: dict) -> list[dict]:
    """Correlation records of one unit (``arrays`` holds every ``Method.array`` and the
    reference as ``reference/<quantity>``): per class and pooled ("overall") for [N, K] maps."""
    out = []
    for quantity in QUANTITIES:
        ref = f"reference/{quantity}"
        if ref not in arrays:
            continue
        for name, a, b in comparisons(task, quantity):
            b = ref if b == "reference" else b
            for klass, r, rho in stats.class_correlations(arrays[a], arrays[b]):
                out.append(
                    base
                    | {"quantity": quantity, "method": name, "class": klass}
                    | {"pearson": r, "spearman": rho}
                )
    return out


@register("LA diag", "epistemic", (*CLASSIFICATION, "gaussian"))
def la_diag_epistemic(fit: Fit) -> np.ndarray:
    """g^T (diag(GGN) + lambda I)^-1 g: the diagonal Laplace approximation the paper names as the
    closest widely used alternative to the identity (Sec. 3.1)."""
    post = _posterior(fit, "diag")
    return laplace.linearised_epistemic(fit.apply, fit.params, fit.grid, fit.likelihood, post)
