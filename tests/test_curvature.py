"""Curvature structures against the exact dense matrices they approximate or restrict."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gnuq import likelihoods, models, problems
from gnuq.baselines import curvature


def _xor_mlp(n=40, widths=(5, 4), dtype=jnp.float64):
    x, y = problems.get("xor").sample(jax.random.key(0), n)
    m = models.mlp(jax.random.key(1), 2, widths, 1, dtype=dtype)
    return m, x.astype(dtype), y, likelihoods.get("bernoulli")


def _rings_mlp(n=30, dtype=jnp.float64):
    x, y = problems.get("rings4").sample(jax.random.key(0), n)
    m = models.mlp(jax.random.key(1), 2, (4,), 4, dtype=dtype)
    return m, x.astype(dtype), y, likelihoods.get("categorical")


def test_ggn_equals_hessian_for_linear_gaussian_model():
    with jax.enable_x64(True):
        x, y = problems.get("linear_1d").sample(jax.random.key(0), 25)
        x, y = x.astype(jnp.float64), y.astype(jnp.float64)
        m = models.mlp(jax.random.key(1), 1, (), 1, dtype=jnp.float64)
        lik = likelihoods.get("gaussian", 0.09)
        h = curvature.curvature(m.apply, m.params, x, y, lik, kind="hessian").matrix
        g = curvature.curvature(m.apply, m.params, x, y, lik, kind="ggn", chunk_size=7).matrix
        # flat order: bias, kernel (ravel_pytree sorts keys)
        design = np.column_stack([np.ones(25), np.asarray(x)[:, 0]])
        np.testing.assert_allclose(h, design.T @ design / 0.09, rtol=1e-10)
        np.testing.assert_allclose(g, h, rtol=1e-10)


@pytest.mark.parametrize("setup", [_xor_mlp, _rings_mlp])
@pytest.mark.parametrize("kind", ["ggn", "ef"])
def test_diag_is_the_diagonal_of_full(setup, kind):
    with jax.enable_x64(True):
        m, x, y, lik = setup()
        full = curvature.curvature(m.apply, m.params, x, y, lik, kind=kind).matrix
        diag = curvature.curvature(
            m.apply, m.params, x, y, lik, kind=kind, structure="diag", chunk_size=9
        ).diagonal
        np.testing.assert_allclose(diag, jnp.diag(full), rtol=1e-10, atol=1e-14)


def test_masked_chunked_hessian_matches_finite_differences_of_the_gradient():
    with jax.enable_x64(True):
        m, x, y, lik = _rings_mlp()
        mask = jnp.arange(len(x)) % 3 != 0
        h = curvature.curvature(
            m.apply, m.params, x, y, lik, kind="hessian", mask=mask, chunk_size=7
        ).matrix
        flat, unravel = ravel_pytree(m.params)

        def grad(theta):
            loss = lambda t: jnp.sum(mask * lik.nll(m.apply(unravel(t), x), y))  # noqa: E731
            return jax.grad(loss)(theta)

        eps = 1e-6
        fd = np.stack(
            [(grad(flat + eps * e) - grad(flat - eps * e)) / (2 * eps) for e in np.eye(flat.size)]
        )
        np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["hessian", "ggn", "ef"])
def test_last_layer_is_the_block_of_full(kind):
    with jax.enable_x64(True):
        m, x, y, lik = _xor_mlp()
        full = curvature.curvature(m.apply, m.params, x, y, lik, kind=kind).matrix
        ll = curvature.curvature(m.apply, m.params, x, y, lik, kind=kind, structure="last_layer")
        assert ll.path == ("Dense_2",)
        marker = jax.tree.map(jnp.zeros_like, m.params)
        marker["Dense_2"] = jax.tree.map(jnp.ones_like, marker["Dense_2"])
        idx = np.flatnonzero(np.asarray(ravel_pytree(marker)[0]))
        np.testing.assert_allclose(ll.matrix, np.asarray(full)[np.ix_(idx, idx)], rtol=1e-10)


@pytest.mark.parametrize("kind", ["ggn", "ef"])
def test_kfac_is_exact_for_one_layer_one_output_one_example(kind):
    with jax.enable_x64(True):
        x = jnp.array([[0.3, -1.2, 0.7]])
        y = jnp.array([1])
        m = models.mlp(jax.random.key(2), 3, (), 1, dtype=jnp.float64)
        lik = likelihoods.get("bernoulli")
        exact = curvature.curvature(m.apply, m.params, x, y, lik, kind=kind).matrix
        kfac = curvature.curvature(m.apply, m.params, x, y, lik, kind=kind, structure="kfac")
        np.testing.assert_allclose(curvature.dense_matrix(kfac, m.params), exact, rtol=1e-10)


@pytest.mark.parametrize("n,tolerance", [(1, 1e-10), (200, 0.5)])
def test_kfac_matches_the_ggn_blocks_of_an_mlp(n, tolerance):
    """KFAC is block-diagonal over layers: exact blocks for one example (the per-example block
    is a Kronecker product), and close for many. How close depends on the random data and
    initialisation: at n=200 the relative error ranged 0.03-0.33 over 31 draws of both (0.145 for
    these), so 0.5 is a margin over that spread, not over one draw; a wrong factor (a missing
    1 / n, transposed factors) misses the blocks by O(1)."""
    with jax.enable_x64(True):
        m, x, y, lik = _xor_mlp(n=n)
        exact = np.asarray(curvature.curvature(m.apply, m.params, x, y, lik).matrix)
        kfac = curvature.curvature(m.apply, m.params, x, y, lik, structure="kfac")
        approx = np.asarray(curvature.dense_matrix(kfac, m.params))
        blocks = np.zeros_like(exact, bool)
        for name in m.params:
            marker = jax.tree.map(jnp.zeros_like, m.params)
            marker[name] = jax.tree.map(jnp.ones_like, marker[name])
            idx = np.flatnonzero(np.asarray(ravel_pytree(marker)[0]))
            blocks[np.ix_(idx, idx)] = True
        assert np.all(approx[~blocks] == 0)
        on_blocks = np.where(blocks, exact, 0.0)
        rel = np.linalg.norm(approx - on_blocks) / np.linalg.norm(on_blocks)
        assert rel < tolerance, rel


def test_masks_split_the_empirical_fisher():
    with jax.enable_x64(True):
        m, x, y, lik = _xor_mlp()
        top = x[:, 1] > 0

        def ef(mask):
            return curvature.curvature(m.apply, m.params, x, y, lik, kind="ef", mask=mask).matrix

        everything = curvature.curvature(m.apply, m.params, x, y, lik, kind="ef").matrix
        np.testing.assert_allclose(ef(jnp.ones(len(x))), everything, rtol=1e-12)
        np.testing.assert_allclose(ef(top) + ef(~top), everything, rtol=1e-10, atol=1e-12)
        g = np.stack(  # ground truth: explicit per-example gradient outer products
            [
                ravel_pytree(
                    jax.grad(lambda p, i=i: lik.nll(m.apply(p, x[i : i + 1]), y[i : i + 1])[0])(
                        m.params
                    )
                )[0]
                for i in range(len(x))
            ]
        )
        np.testing.assert_allclose(everything, g.T @ g, rtol=1e-10, atol=1e-12)


def test_full_structure_refuses_a_million_parameters_before_allocating():
    m = models.mlp(jax.random.key(0), 2, (1028, 1028), 4)
    x, y = problems.get("rings4").sample(jax.random.key(0), 8)
    with pytest.raises(ValueError, match="use structure='kfac', 'diag' or 'last_layer'"):
        curvature.curvature(m.apply, m.params, x, y, likelihoods.get("categorical"))


def test_bad_curvature_requests():
    m, x, y, lik = _xor_mlp(dtype=jnp.float32)
    with pytest.raises(ValueError, match="unknown curvature kind"):
        curvature.curvature(m.apply, m.params, x, y, lik, kind="fisher")
    with pytest.raises(ValueError, match="unknown structure"):
        curvature.curvature(m.apply, m.params, x, y, lik, structure="block")
    with pytest.raises(ValueError, match="kind='ggn'"):
        curvature.curvature(m.apply, m.params, x, y, lik, kind="hessian", structure="diag")
    with pytest.raises(ValueError, match="mask must be"):
        curvature.curvature(m.apply, m.params, x, y, lik, mask=jnp.ones(3))
