"""Laplace posteriors against the closed-form Bayesian posterior and the dense matrices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gnuq
from gnuq import likelihoods, models, problems, train
from gnuq.baselines import curvature, laplace


def test_la_is_the_exact_posterior_for_bayesian_linear_regression():
    """Gaussian likelihood, linear model: Sigma = (X'X / s2 + lam I)^-1 exactly, and the
    linearised predictive variance g' Sigma g is exact, to 1e-8 in float64."""
    with jax.enable_x64(True):
        p = problems.get("linear_1d")
        x, y = p.sample(jax.random.key(0), 40)
        x, y = x.astype(jnp.float64), y.astype(jnp.float64)
        m = models.mlp(jax.random.key(1), 1, (), 1, dtype=jnp.float64)
        lik, lam = likelihoods.get("gaussian", p.noise_var), 2.0
        cfg = train.MapConfig(prior_precision=lam, grad_tol=1e-9)
        theta = train.fit_map(m.apply, lik, m.params, x, y, cfg).params
        grid = p.grid(11).astype(jnp.float64)
        design = np.column_stack([np.ones(40), np.asarray(x)[:, 0]])  # (bias, kernel) order
        cov = np.linalg.inv(design.T @ design / p.noise_var + lam * np.eye(2))
        g = np.column_stack([np.ones(11), np.asarray(grid)[:, 0]])
        exact = np.einsum("ni,ij,nj->n", g, cov, g)
        for kind in ("hessian", "ggn"):
            post = laplace.laplace_posterior(m.apply, theta, x, y, lik, lam, kind=kind)
            la = laplace.linearised_epistemic(m.apply, theta, grid, lik, post)
            np.testing.assert_allclose(la[:, 0], exact, rtol=1e-8)
        # the last layer of a linear model is the whole model
        post = laplace.laplace_posterior(m.apply, theta, x, y, lik, lam, structure="last_layer")
        np.testing.assert_allclose(
            laplace.linearised_epistemic(m.apply, theta, grid, lik, post)[:, 0], exact, rtol=1e-8
        )


def _small_problem(n=60):
    x, y = problems.get("xor").sample(jax.random.key(0), n)
    m = models.mlp(jax.random.key(1), 2, (4, 3), 1, dtype=jnp.float64)
    return m, x.astype(jnp.float64), y, likelihoods.get("bernoulli")


@pytest.mark.parametrize("structure", ["full", "diag", "kfac", "last_layer"])
def test_inverse_quadratic_form_and_samples_match_the_dense_precision(structure):
    with jax.enable_x64(True):
        m, x, y, lik = _small_problem()
        lam = 0.7
        curv = curvature.curvature(m.apply, m.params, x, y, lik, structure=structure)
        post = laplace.posterior(curv, m.params, lam)
        dense = np.asarray(curvature.dense_matrix(curv, m.params))
        sigma = np.linalg.inv(dense + lam * np.eye(len(dense)))
        v = np.asarray(jax.random.normal(jax.random.key(5), (3, len(dense)), jnp.float64))
        np.testing.assert_allclose(
            post.inv_quad(jnp.asarray(v)), np.einsum("ni,ij,nj->n", v, sigma, v), rtol=1e-9
        )
        draws = np.asarray(post.sample(jax.random.key(6), 20000))
        sd = np.sqrt(np.diag(sigma))
        assert np.all(np.abs(draws.mean(0)) < 5 * sd / np.sqrt(20000))
        se = np.sqrt((np.outer(sd**2, sd**2) + sigma**2) / 20000)  # of each covariance entry
        assert np.all(np.abs(np.cov(draws.T) - sigma) < 5 * se)


def test_indefinite_hessian_falls_back_to_the_ggn_with_a_warning():
    with jax.enable_x64(True):
        m, x, y, lik = _small_problem()  # at a random init, far from any minimum
        lam = 1e-3
        h = curvature.curvature(m.apply, m.params, x, y, lik, kind="hessian").matrix
        assert np.linalg.eigvalsh(np.asarray(h))[0] + lam < 0  # the case under test
        with pytest.warns(RuntimeWarning, match="not positive definite.*using the GGN"):
            post = laplace.laplace_posterior(m.apply, m.params, x, y, lik, lam, kind="hessian")
        assert post.kind == "ggn"
        la = laplace.linearised_epistemic(m.apply, m.params, x, lik, post)
        assert bool(jnp.all(jnp.isfinite(la))) and bool(jnp.all(la > 0))
        with pytest.raises(np.linalg.LinAlgError, match="smallest eigenvalue"):
            laplace.laplace_posterior(
                m.apply, m.params, x, y, lik, lam, kind="hessian", on_indefinite="raise"
            )


def test_linearised_epistemic_uses_the_estimators_gradients():
    """With C = 0 and lambda = 1 the LA epistemic is exactly the gradient norm."""
    with jax.enable_x64(True):
        m, x, _, lik = _small_problem()
        zero = jnp.zeros(models.count_params(m.params), jnp.float64)
        post = laplace.posterior(curvature.Diagonal("ggn", zero), m.params, 1.0)
        la = laplace.linearised_epistemic(m.apply, m.params, x, lik, post, chunk_size=7)
        gn = gnuq.squared_grad_norms(m.apply, m.params, x, likelihood="bernoulli")
        np.testing.assert_allclose(la, gn, rtol=1e-10)


def test_sampled_moments_match_monte_carlo_by_hand():
    with jax.enable_x64(True):
        m, x, y, lik = _small_problem()
        post = laplace.laplace_posterior(m.apply, m.params, x, y, lik, 1.0, structure="diag")
        mean, var, ale = laplace.sampled_moments(
            jax.random.key(3), m.apply, m.params, x[:5], lik, post, num_samples=300
        )
        flat, unravel = ravel_pytree(m.params)
        draws = flat + post.sample(jax.random.key(3), 300)
        p = np.stack([np.asarray(jax.nn.sigmoid(m.apply(unravel(d), x[:5]))) for d in draws])
        np.testing.assert_allclose(mean, p.mean(0), rtol=1e-10)
        np.testing.assert_allclose(var, p.var(0), rtol=1e-8)
        np.testing.assert_allclose(ale, (p * (1 - p)).mean(0), rtol=1e-10)


def test_proxy_posteriors_from_two_halves():
    with jax.enable_x64(True):
        m, x, y, lik = _small_problem()
        top = x[:, 1] > 0
        post_a = laplace.proxy_posterior(m.apply, m.params, x, y, lik, 1.0, top)
        post_b = laplace.proxy_posterior(m.apply, m.params, x, y, lik, 1.0, ~top)
        grid = problems.get("xor").grid(8).astype(jnp.float64)
        u_a = laplace.linearised_epistemic(m.apply, m.params, grid, lik, post_a)
        u_b = laplace.linearised_epistemic(m.apply, m.params, grid, lik, post_b)
        upper = np.asarray(grid[:, 1] > 0)
        # each proxy is more certain where its data lies
        assert np.mean(u_a[upper]) / np.mean(u_a[~upper]) < np.mean(u_b[upper]) / np.mean(
            u_b[~upper]
        )


def test_spectrum():
    s = laplace.spectrum(jnp.diag(jnp.array([4.0, 0.5, 2.0])))
    np.testing.assert_allclose(s.eigenvalues, [0.5, 2.0, 4.0])
    assert (s.min, s.max, s.ratio) == (0.5, 4.0, 8.0)
    assert laplace.spectrum(jnp.diag(jnp.array([-1.0, 2.0]))).ratio == float("inf")


def _rings_problem(n=50):
    x, y = problems.get("rings4").sample(jax.random.key(0), n)
    m = models.mlp(jax.random.key(1), 2, (5, 3), 4, dtype=jnp.float64)
    return m, x.astype(jnp.float64), y, likelihoods.get("categorical")


@pytest.mark.parametrize("setup", [_small_problem, _rings_problem])
@pytest.mark.parametrize("structure", ["kfac", "diag"])
def test_dense_linearised_epistemic_equals_the_per_example_gradient_path(setup, structure):
    """Ground truth: g^T Sigma g with every g formed by vmap(jacrev) and post.inv_quad (itself
    tested against the dense precision above); the eigenbasis / diagonal form from layer inputs
    and pre-activation gradients agrees to 1e-10 relative in float64."""
    with jax.enable_x64(True):
        m, x, y, lik = setup()
        post = laplace.laplace_posterior(m.apply, m.params, x, y, lik, 0.7, structure=structure)
        grid = problems.get("rings4").grid(9).astype(jnp.float64)
        dense = laplace.linearised_epistemic(m.apply, m.params, grid, lik, post, 10, "dense")
        vmap = laplace.linearised_epistemic(m.apply, m.params, grid, lik, post, method="vmap")
        auto = laplace.linearised_epistemic(m.apply, m.params, grid, lik, post)
        assert dense.shape == vmap.shape == (81, 4 if lik.name == "categorical" else 1)
        np.testing.assert_allclose(dense, vmap, rtol=1e-10)
        np.testing.assert_array_equal(auto, dense)


def test_dense_linearised_epistemic_refuses_what_it_cannot_serve():
    with jax.enable_x64(True):
        m, x, y, lik = _small_problem()
        full = laplace.laplace_posterior(m.apply, m.params, x, y, lik, 1.0)
        with pytest.raises(ValueError, match="not block-diagonal over Dense layers"):
            laplace.linearised_epistemic(m.apply, m.params, x, lik, full, method="dense")
        np.testing.assert_array_equal(  # auto falls back to the per-example path
            laplace.linearised_epistemic(m.apply, m.params, x, lik, full),
            laplace.linearised_epistemic(m.apply, m.params, x, lik, full, method="vmap"),
        )

        def plain(p, xx):  # a model without flax.linen.Dense layers
            return jnp.tanh(xx @ p["w"]) @ p["v"]

        params = {"w": jnp.ones((2, 3)) / 3, "v": jnp.ones((3, 1))}
        diag = laplace.posterior(curvature.Diagonal("ggn", jnp.ones(9)), params, 1.0)
        with pytest.raises(ValueError, match="calls no flax"):
            laplace.linearised_epistemic(plain, params, x, lik, diag, method="dense")
        gn = gnuq.squared_grad_norms(plain, params, x, likelihood="bernoulli")
        np.testing.assert_allclose(  # auto: per-example path; Sigma = I / 2 here
            laplace.linearised_epistemic(plain, params, x, lik, diag), gn / 2, rtol=1e-10
        )
        with pytest.raises(ValueError, match="unknown method"):
            laplace.linearised_epistemic(m.apply, m.params, x, lik, diag, method="fast")
