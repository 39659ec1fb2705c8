"""Curvature structures as small objects, each knowing its own algebra.

A structure holds a curvature C (``gnuq.curvature``) in one form and knows

    dense(params)            C as a dense matrix over its flat parameters (tests, small models)
    covariance(params, lam)  Sigma = (C + lam I)^-1 in the same form, which in turn knows
        inv_quad(v [..., P])         v^T Sigma v                                   -> [...]
        sample(key, n)               n draws of theta - theta* ~ N(0, Sigma)        -> [n, P]
        layer_inverse(path, bias)    (layer-wise forms only) one Dense layer's block of Sigma,
                                     for the Laplace dense path (see ``LayerInverse``)

    Full        C [P, P] over all parameters, or over the last Dense layer's sub-tree (``path``)
                for ``last_layer``: Sigma by Cholesky, L L^T = C + lam I
    Diagonal    C = diag(D) [P]: Sigma = diag(1 / (D + lam))
    Kron        per Dense layer C_l = A (x) B: with A = Qa diag(sa) Qa^T, B = Qb diag(sb) Qb^T,
                Sigma_l = (Qa (x) Qb) diag(1 / (sa_i sb_j + lam)) (Qa (x) Qb)^T

Flat vectors follow ``ravel_pytree`` of the params (or of the sub-tree at ``path``).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.flatten_util import ravel_pytree

from gnuq.dense import get_path, set_path, stack_dense, unstack_dense
from gnuq.types import Array, Params, PRNGKey


class IndefiniteError(np.linalg.LinAlgError):
    """The precision C + lam I is not positive definite (an exact Hessian can make it so)."""


class LayerInverse(NamedTuple):
    """One Dense layer's block of Sigma, for per-example gradients vec(a delta^T).

    That block's part of g^T Sigma g is sum_ij (qa^T a)_i^2 (qb^T delta)_j^2 weights_ij, with
    ``a [d_in (+1)]`` (1 appended for the bias), ``delta [d_out]``; ``qa``/``qb`` None mean the
    identity (no rotation).
    """

    qa: Array | None  # [d_in (+1), d_in (+1)]
    qb: Array | None  # [d_out, d_out]
    weights: Array  # [d_in (+1), d_out]


# ---------------------------------------------------------------------------------------------
# full (and last layer)


class FullCovariance(NamedTuple):
    chol: Array  # [P, P] lower Cholesky factor of the precision

    def inv_quad(self, v: Array) -> Array:
        w = jsl.solve_triangular(self.chol, v.T if v.ndim > 1 else v, lower=True)
        return jnp.sum(w**2, axis=0)

    def sample(self, key: PRNGKey, n: int) -> Array:
        z = jax.random.normal(key, (self.chol.shape[0], n), self.chol.dtype)
        return jsl.solve_triangular(self.chol.T, z, lower=False).T  # L^-T z ~ N(0, Sigma)


class Full(NamedTuple):
    """A dense curvature over all parameters (``path`` None) or over the sub-tree at ``path``."""

    kind: str
    matrix: Array  # [P, P] over the flat (sub-)parameters
    path: tuple[str, ...] | None = None

    @property
    def structure(self) -> str:
        return "full" if self.path is None else "last_layer"

    def dense(self, params: Params) -> Array:
        return self.matrix

    def covariance(self, params: Params, lam: float) -> FullCovariance:
        """Raises ``IndefiniteError`` (naming the smallest eigenvalue) when C + lam I is not
        positive definite: Cholesky then returns NaN rather than failing."""
        precision = self.matrix + lam * jnp.eye(self.matrix.shape[0], dtype=self.matrix.dtype)
        chol = jnp.linalg.cholesky(precision)
        if not bool(jnp.all(jnp.isfinite(chol))):
            smallest = float(jnp.linalg.eigvalsh(precision)[0])
            raise IndefiniteError(
                f"the {self.kind} precision (curvature + prior) is not positive definite: "
                f"smallest eigenvalue {smallest:.3g}"
            )
        return FullCovariance(chol)


# ---------------------------------------------------------------------------------------------
# diagonal


class DiagonalCovariance(NamedTuple):
    precision: Array  # [P] the diagonal of C + lam I
    unravel: Callable[[Array], Params]

    def inv_quad(self, v: Array) -> Array:
        return jnp.sum(v**2 / self.precision, axis=-1)

    def sample(self, key: PRNGKey, n: int) -> Array:
        d = self.precision
        return jax.random.normal(key, (n, d.size), d.dtype) / jnp.sqrt(d)

    def layer_inverse(self, path: tuple[str, ...], use_bias: bool) -> LayerInverse:
        inverse = stack_dense(get_path(self.unravel(1 / self.precision), path), use_bias)
        return LayerInverse(None, None, inverse)


class Diagonal(NamedTuple):
    kind: str
    diagonal: Array  # [P]
    structure = "diag"
    path = None

    def dense(self, params: Params) -> Array:
        return jnp.diag(self.diagonal)

    def covariance(self, params: Params, lam: float) -> DiagonalCovariance:
        return DiagonalCovariance(self.diagonal + lam, ravel_pytree(params)[1])


# ---------------------------------------------------------------------------------------------
# Kronecker-factored (KFAC)


class KronFactor(NamedTuple):
    """One Dense layer's Kronecker factors; ``path`` locates it in the params pytree."""

    path: tuple[str, ...]
    A: Array  # [d_in (+1 with bias), d_in (+1)]
    B: Array  # [d_out, d_out]
    use_bias: bool


class KronCovariance(NamedTuple):
    factors: tuple[KronFactor, ...]
    eigen: tuple  # per factor ((sa, Qa), (sb, Qb)), eigh of A and B
    lam: float
    params: Params  # the tree whose flat coordinates v and the draws use
    blocks: dict  # (path, use_bias) -> LayerInverse

    def inv_quad(self, v: Array) -> Array:
        _, unravel = ravel_pytree(self.params)

        def one(u: Array) -> Array:
            tree = unravel(u)
            total = 0.0
            for f, ((ea, qa), (eb, qb)) in zip(self.factors, self.eigen, strict=True):
                m = qa.T @ stack_dense(get_path(tree, f.path), f.use_bias) @ qb
                total = total + jnp.sum(m**2 / (jnp.outer(ea, eb) + self.lam))
            return total

        return jax.vmap(one)(v.reshape(-1, v.shape[-1])).reshape(v.shape[:-1])

    def sample(self, key: PRNGKey, n: int) -> Array:
        def one(k: PRNGKey) -> Array:
            tree = jax.tree.map(jnp.zeros_like, self.params)
            keys = jax.random.split(k, len(self.factors))
            for kf, f, ((ea, qa), (eb, qb)) in zip(keys, self.factors, self.eigen, strict=True):
                z = jax.random.normal(kf, (ea.size, eb.size), ea.dtype)
                m = qa @ (z / jnp.sqrt(jnp.clip(jnp.outer(ea, eb), 0.0) + self.lam)) @ qb.T
                tree = set_path(tree, f.path, unstack_dense(m, f.use_bias))
            return ravel_pytree(tree)[0]

        return jax.vmap(one)(jax.random.split(key, n))

    def layer_inverse(self, path: tuple[str, ...], use_bias: bool) -> LayerInverse:
        if (path, use_bias) not in self.blocks:
            raise ValueError(f"no KFAC factor for the Dense layer {'/'.join(path)}")
        return self.blocks[(path, use_bias)]


class Kron(NamedTuple):
    kind: str
    factors: tuple[KronFactor, ...]
    structure = "kfac"
    path = None

    def dense(self, params: Params) -> Array:
        """(A (x) B) applied to every basis vector, layer by layer."""
        flat, unravel = ravel_pytree(params)

        def mv(v: Array) -> Array:
            tree = unravel(v)
            out = jax.tree.map(jnp.zeros_like, tree)
            for f in self.factors:
                M = stack_dense(get_path(tree, f.path), f.use_bias)
                out = set_path(out, f.path, unstack_dense(f.A @ M @ f.B, f.use_bias))
            return ravel_pytree(out)[0]

        return jax.vmap(mv)(jnp.eye(flat.size, dtype=flat.dtype))

    def covariance(self, params: Params, lam: float) -> KronCovariance:
        eigen = tuple((jnp.linalg.eigh(f.A), jnp.linalg.eigh(f.B)) for f in self.factors)
        blocks = {
            (f.path, f.use_bias): LayerInverse(qa, qb, 1 / (jnp.outer(ea, eb) + lam))
            for f, ((ea, qa), (eb, qb)) in zip(self.factors, eigen, strict=True)
        }
        return KronCovariance(self.factors, eigen, lam, params, blocks)


Curvature = Full | Diagonal | Kron
Covariance = FullCovariance | DiagonalCovariance | KronCovariance
