"""The three observation models gnuq supports, as small pure functions.

A likelihood turns a model's raw outputs into the quantities the estimators differentiate
(``predict``: class probabilities or the regression mean, always ``[N, K]``) and into the
per-example negative log-likelihood that MAP training, Laplace and MCMC share.

- ``bernoulli``:   outputs are logits ``[N]`` or ``[N, 1]``; K = 1, p = sigmoid(z).
- ``categorical``: outputs are logits ``[N, C]`` (C >= 2); K = C, p = softmax(z).
- ``gaussian``:    outputs are means ``[N]`` or ``[N, 1]``; K = 1; y ~ N(f(x), noise_var).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gnuq.types import Array

NAMES = ("bernoulli", "categorical", "gaussian")


class Likelihood(NamedTuple):
    name: str
    noise_var: float | None = None  # gaussian only

    def outputs(self, out: Array) -> Array:
        """Validate raw outputs and return them as ``[N, K]``."""
        return _as_2d(self.name, out)

    def predict(self, out: Array) -> Array:
        """``[N, K]`` probabilities (bernoulli: positive class; categorical: softmax) or means."""
        z = self.outputs(out)
        if self.name == "bernoulli":
            return jax.nn.sigmoid(z)
        if self.name == "categorical":
            return jax.nn.softmax(z, axis=-1)
        return z

    def nll(self, out: Array, y: Array) -> Array:
        """Per-example negative log-likelihood ``[N]``.

        bernoulli: y in {0, 1}; categorical: integer labels in [0, C); gaussian: real targets.
        """
        z = self.outputs(out)
        if jnp.shape(y) != z.shape[:1]:  # a [N, 1] target would broadcast to [N, N] silently
            raise ValueError(f"targets must have shape [N] = {z.shape[:1]}, got {jnp.shape(y)}")
        if self.name == "bernoulli":
            z = z[:, 0]
            return jnp.logaddexp(0.0, z) - y * z  # -log sigmoid(z)^y (1 - sigmoid(z))^(1-y)
        if self.name == "categorical":
            logp = jax.nn.log_softmax(z, axis=-1)
            return -jnp.take_along_axis(logp, y.astype(jnp.int32)[:, None], axis=1)[:, 0]
        if self.noise_var is None:
            raise ValueError("the gaussian likelihood needs noise_var= for its log-likelihood")
        r = z[:, 0] - y
        return 0.5 * r**2 / self.noise_var + 0.5 * jnp.log(2 * jnp.pi * self.noise_var)


def check_data(lik: Likelihood, x: Array, y: Array) -> None:
    """Training data the likelihood can use, or a ValueError saying what is wrong.

    x: finite, as many rows as y. y: bernoulli labels in {0, 1}; categorical integer labels >= 0
    (the upper bound C is the model's); gaussian finite targets. Tracers (inside ``jit``) are
    not checked.
    """
    if np.shape(x)[:1] != np.shape(y)[:1]:
        rows = np.shape(y)[0] if np.ndim(y) else "no rows (a scalar)"
        raise ValueError(f"x has {np.shape(x)[0]} rows but y has {rows}")
    if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
        return
    xs = np.asarray(x)
    if np.issubdtype(xs.dtype, np.inexact):
        finite = np.isfinite(xs).reshape(len(xs), -1).all(axis=1)
        if not finite.all():
            rows = np.flatnonzero(~finite)[:10].tolist()
            raise ValueError(f"training x contains NaN or inf in rows {rows}")
    ys = np.asarray(y)
    if not np.isfinite(ys).all():
        rows = np.flatnonzero(~np.isfinite(ys))[:10].tolist()
        raise ValueError(f"training y contains NaN or inf in rows {rows}")
    if lik.name == "bernoulli" and not np.isin(ys, (0, 1)).all():
        raise ValueError(
            f"bernoulli labels must be 0 or 1, got values {np.unique(ys)[:10].tolist()} "
            "(map {-1, +1} labels with (y + 1) / 2)"
        )
    if lik.name == "categorical" and not ((ys >= 0) & (ys == np.round(ys))).all():
        raise ValueError(
            f"categorical labels must be integers >= 0, got {np.unique(ys)[:10].tolist()}"
        )


def get(name: str, noise_var: float | None = None) -> Likelihood:
    """Return the likelihood called ``name`` (one of ``NAMES``).

    ``noise_var`` is the gaussian observation variance; only ``nll`` needs it.
    """
    if name not in NAMES:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {NAMES}")
    if name == "gaussian":
        if noise_var is not None and not noise_var > 0:
            raise ValueError(f"noise_var must be positive, got {noise_var}")
    elif noise_var is not None:
        raise ValueError(f"noise_var is only meaningful for the gaussian likelihood, not {name!r}")
    return Likelihood(name, None if noise_var is None else float(noise_var))


def _as_2d(name: str, out: Array) -> Array:
    if name == "categorical":
        if out.ndim != 2 or out.shape[1] < 2:
            raise ValueError(
                f"categorical likelihood expects logits of shape [N, C] with C >= 2, "
                f"got {tuple(out.shape)}"
            )
        return out
    if out.ndim == 1:
        return out[:, None]
    if out.ndim == 2 and out.shape[1] == 1:
        return out
    what = "logits" if name == "bernoulli" else "means"
    raise ValueError(
        f"{name} likelihood expects {what} of shape [N] or [N, 1], got {tuple(out.shape)}"
    )
