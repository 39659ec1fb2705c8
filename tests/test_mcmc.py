"""The MCMC reference against closed-form posteriors, quadrature, and diagnostics that can fail."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gnuq import likelihoods, models, problems, train
from gnuq.baselines import mcmc

FAST = mcmc.McmcConfig(num_warmup=500, num_samples=1000, progress=False)


def _linear_regression(n=30, prior_precision=1.0):
    p = problems.get("linear_1d")
    x, y = p.sample(jax.random.key(0), n)
    m = models.mlp(jax.random.key(1), 1, (), 1)
    lik = likelihoods.get("gaussian", p.noise_var)
    cfg = train.MapConfig(prior_precision=prior_precision)
    fit = train.fit_map(m.apply, lik, m.params, x, y, cfg)
    design = np.column_stack([np.asarray(x, np.float64)[:, 0], np.ones(n)])
    cov = np.linalg.inv(design.T @ design / p.noise_var + prior_precision * np.eye(2))
    mean = cov @ design.T @ np.asarray(y, np.float64) / p.noise_var
    return p, x, y, m, lik, fit.params, mean, cov


@pytest.fixture(scope="module")
def linear_reference():
    p, x, y, m, lik, map_params, mean, cov = _linear_regression()
    grid = p.grid(25)
    ref = mcmc.reference(jax.random.key(2), m.apply, lik, x, y, map_params, grid, 1.0, FAST)
    return ref, grid, mean, cov


def test_bayesian_linear_regression_posterior_matches_closed_form(linear_reference):
    ref, grid, mean, cov = linear_reference
    pos = ref.chains.positions
    draws = np.stack(
        [
            np.asarray(pos["Dense_0"]["kernel"])[..., 0, 0],
            np.asarray(pos["Dense_0"]["bias"])[..., 0],
        ],
        axis=-1,
    )  # [chains, samples, 2]: (slope, intercept)
    _, ess = mcmc.split_rhat_and_bulk_ess(draws)
    flat = draws.reshape(-1, 2).astype(np.float64)
    sd = np.sqrt(np.diag(cov))
    # sample mean within 4 Monte Carlo standard errors
    assert np.all(np.abs(flat.mean(axis=0) - mean) <= 4 * sd / np.sqrt(ess)), (flat.mean(0), mean)
    # covariance: the standard error of cov_ij is sqrt((s_i^2 s_j^2 + cov_ij^2) / ESS)
    se = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / ess.min())
    assert np.all(np.abs(np.cov(flat.T) - cov) <= 4 * se), (np.cov(flat.T), cov)
    # predictive variance of f(x) = [x, 1] . theta on the grid: g' Sigma g
    g = np.column_stack([np.asarray(grid)[:, 0], np.ones(len(grid))])
    exact = np.einsum("ni,ij,nj->n", g, cov, g)
    rel = 4 * np.sqrt(2 / ess.min())  # the relative standard error of a variance is sqrt(2/ESS)
    np.testing.assert_allclose(ref.epistemic[:, 0], exact, rtol=rel)
    np.testing.assert_allclose(ref.mean[:, 0], g @ mean, atol=4 * np.sqrt(exact.max() / ess.min()))
    assert ref.diagnostics.ok and ref.diagnostics.rhat_max <= 1.01
    assert ref.diagnostics.divergences == 0
    np.testing.assert_allclose(ref.aleatoric, problems.get("linear_1d").noise_var)


def test_bayesian_logistic_regression_predictive_matches_quadrature():
    """1D inputs, parameters (w, b): the posterior predictive mean and variance of p(x) by 2D
    quadrature on a fine grid over (w, b) vs NUTS."""
    x = jnp.array([[-1.5], [-0.7], [-0.2], [0.1], [0.4], [0.9], [1.3], [2.0]])
    y = jnp.array([0, 0, 1, 0, 1, 1, 0, 1])
    m = models.mlp(jax.random.key(0), 1, (), 1)
    lik = likelihoods.get("bernoulli")
    lam = 0.5
    fit = train.fit_map(m.apply, lik, m.params, x, y, train.MapConfig(prior_precision=lam))
    x_eval = jnp.array([[-3.0], [0.0], [1.0], [4.0]])
    cfg = mcmc.McmcConfig(num_warmup=500, num_samples=2000, progress=False)
    ref = mcmc.reference(jax.random.key(3), m.apply, lik, x, y, fit.params, x_eval, lam, cfg)

    w, b = np.meshgrid(np.linspace(-8, 10, 801), np.linspace(-8, 8, 801), indexing="ij")
    xs, ys = np.asarray(x, np.float64)[:, 0], np.asarray(y, np.float64)
    logits = w[..., None] * xs + b[..., None]
    loglik = np.sum(ys * logits - np.logaddexp(0, logits), axis=-1)
    logpost = loglik - 0.5 * lam * (w**2 + b**2)
    weights = np.exp(logpost - logpost.max())
    weights /= weights.sum()
    for i, xe in enumerate(np.asarray(x_eval)[:, 0]):
        p = special.expit(w * xe + b)
        mean = np.sum(weights * p)
        var = np.sum(weights * (p - mean) ** 2)
        ale = np.sum(weights * p * (1 - p))
        assert ref.mean[i, 0] == pytest.approx(mean, abs=0.02)
        assert ref.epistemic[i, 0] == pytest.approx(var, rel=0.15)
        assert ref.aleatoric[i, 0] == pytest.approx(ale, rel=0.05)
    assert ref.diagnostics.ok


def test_predictive_moments_stream_exactly():
    positions = {"w": jax.random.normal(jax.random.key(0), (3, 37, 2))}
    x = jnp.linspace(-1, 1, 5)[:, None]

    def predict(p, xx):
        return jax.nn.sigmoid(xx * p["w"][0] + p["w"][1])  # [N, 1]

    mean, var, ale = mcmc.predictive_moments(predict, positions, x, sample_chunk=10)
    all_p = np.stack([predict({"w": w}, x) for w in np.asarray(positions["w"]).reshape(-1, 2)])
    all_p = all_p.astype(np.float64)
    np.testing.assert_allclose(mean, all_p.mean(0), rtol=1e-6)
    np.testing.assert_allclose(var, all_p.var(0), rtol=1e-5)
    np.testing.assert_allclose(ale, (all_p * (1 - all_p)).mean(0), rtol=1e-6)


def test_rhat_and_ess_on_known_processes():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 2000, 3))
    rhat, ess = mcmc.split_rhat_and_bulk_ess(iid)
    assert np.all(rhat < 1.01) and np.all(ess > 0.8 * 8000)
    rho = 0.9  # AR(1): ESS = N (1 - rho) / (1 + rho)
    ar = np.zeros((4, 4000, 1))
    noise = rng.normal(size=ar.shape)
    for t in range(1, ar.shape[1]):
        ar[:, t] = rho * ar[:, t - 1] + np.sqrt(1 - rho**2) * noise[:, t]
    _, ess = mcmc.split_rhat_and_bulk_ess(ar)
    assert ess[0] == pytest.approx(16000 * (1 - rho) / (1 + rho), rel=0.25)
    shifted = iid + np.array([0, 0, 0, 1.0])[:, None, None]  # one chain elsewhere
    rhat, _ = mcmc.split_rhat_and_bulk_ess(shifted)
    assert np.all(rhat > 1.05)


def test_diagnostics_flag_chains_stuck_in_different_modes():
    """f(x) = w^2 x: modes at w = +1 and w = -1 with a high barrier between them. Two chains
    start in each mode; the predictions agree, the parameter w does not."""
    x = jnp.linspace(-2, 2, 200)[:, None]
    y = x[:, 0] + 0.1 * jax.random.normal(jax.random.key(0), (200,))
    lik = likelihoods.get("gaussian", 0.01)

    def apply(p, xx):
        return p["w"] ** 2 * xx[:, 0]

    potential = train.neg_log_posterior(apply, lik, 1.0)
    init = {"w": jnp.array([1.0, -1.0, 1.0, -1.0])}
    cfg = mcmc.McmcConfig(num_warmup=200, num_samples=400, progress=False)
    chains = mcmc.sample(jax.random.key(1), lambda p: -potential(p, x, y), init, cfg)
    diag = mcmc.diagnose(chains, None, cfg)
    assert not diag.ok and diag.rhat_max_params > 1.5
    assert any("R-hat" in f for f in diag.failures)
    # gating on the predictions instead: f(x) = w^2 x is the same in both modes
    preds = np.asarray(chains.positions["w"])[..., None] ** 2 * np.array([0.5, 1.0, 2.0])
    gated = mcmc.diagnose(chains, preds, dataclasses.replace(cfg, gate="predictive"))
    assert gated.rhat_max <= 1.01 and gated.rhat_max_params > 1.5
    assert not any("R-hat" in f for f in gated.failures)


def test_too_short_reference_warns_and_is_not_ok():
    p, x, y, m, lik, map_params, _, _ = _linear_regression()
    cfg = mcmc.McmcConfig(num_warmup=100, num_samples=30, progress=False)
    with pytest.warns(RuntimeWarning, match="ESS"):
        ref = mcmc.reference(jax.random.key(2), m.apply, lik, x, y, map_params, p.grid(5), 1.0, cfg)
    assert not ref.diagnostics.ok and ref.diagnostics.row()["ok"] is False


def test_device_chains_equal_sequential_chains():
    script = textwrap.dedent(
        """
        import jax, numpy as np
        from gnuq.baselines import mcmc
        assert jax.local_device_count() == 2
        def logdensity(p):
            return -0.5 * jax.numpy.sum((p["a"] - 1.0) ** 2 / 0.3) - 0.5 * p["b"] ** 2
        init = {"a": jax.numpy.zeros((4, 3)), "b": jax.numpy.ones(4)}
        out = {}
        for method in ("sequential", "devices"):
            cfg = mcmc.McmcConfig(num_warmup=100, num_samples=100, chain_method=method,
                                  progress=False)
            out[method] = mcmc.sample(jax.random.key(0), logdensity, init, cfg)
        assert mcmc.resolve_chain_method("auto") == "devices"
        for a, b in zip(jax.tree.leaves(out["sequential"]), jax.tree.leaves(out["devices"])):
            np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5,
                                       atol=1e-6)
        print("same draws")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same draws" in done.stdout


def test_bad_config_values():
    with pytest.raises(ValueError, match="chain_method"):
        mcmc.McmcConfig(chain_method="threads")
    with pytest.raises(ValueError, match="num_samples"):
        mcmc.McmcConfig(num_samples=0)
    with pytest.warns(UserWarning, match="one chain"):
        mcmc.McmcConfig(num_chains=1)
