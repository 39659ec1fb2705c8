"""The MCMC reference against closed-form posteriors, quadrature, and diagnostics that can fail."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal, special, stats

from gnuq import likelihoods, models, problems, train
from gnuq.baselines import diagnostics, mcmc, moments

# 2 000 draws per chain: an ESS of ~4 000 for every quantity, where mixing chains pass the 1.01
# R-hat gate but for a chance of about 1e-6 (_mixing_rhat_bound)
FAST = mcmc.McmcConfig(num_warmup=500, num_samples=2000, progress=False)


# Every tolerance on a draw-based number below is a multiple of its Monte Carlo standard error,
# sd / sqrt(ESS) with the ESS of the very quantity averaged, so it holds for any chains (any CPU:
# XLA's code, hence the draws, differ between CPUs), not for one machine's digits.


def _ess(draws) -> np.ndarray:
    """Bulk ESS of each quantity of ``draws`` ``[chains, samples, Q]``: the ESS that sets the
    Monte Carlo error of that quantity's mean. A variance is a mean of squared deviations: its
    ESS is the ESS of those, lower than the ESS of the draws themselves for NUTS."""
    return mcmc.split_rhat_and_bulk_ess(np.asarray(draws, np.float64))[1]


def _mixing_rhat_bound(draws, tail: float = 1e-6) -> np.ndarray:
    """Per quantity of ``draws`` ``[chains, samples, Q]``: the split R-hat that chains which do
    mix exceed with probability about ``tail``.

    With C split chains and B / W the between / within variance ratio, R-hat^2 = (n - 1) / n +
    B / (n W). For chains that mix, each split chain's mean scatters with variance sd^2 C / ESS,
    so B / (n W) = (C / ESS) X with X ~ chi2(C - 1) / (C - 1), and R-hat^2 < 1 + (C / ESS) X.
    mcmc reports the larger of the bulk and the folded R-hat: the smaller of their ESSs is used.
    """
    draws = np.asarray(draws, np.float64)
    c = 2 * draws.shape[0]
    folded = np.abs(draws - np.median(draws.reshape(-1, draws.shape[-1]), axis=0))
    ess = np.minimum(_ess(draws), _ess(folded))
    x = stats.chi2.ppf(1 - tail, c - 1) / (c - 1)
    return np.sqrt(1 + c * x / ess)


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
    ).astype(np.float64)  # [chains, samples, 2]: (slope, intercept)
    flat = draws.reshape(-1, 2)
    sd = np.sqrt(np.diag(cov))
    # sample mean within 4 Monte Carlo standard errors
    assert np.all(np.abs(flat.mean(axis=0) - mean) <= 4 * sd / np.sqrt(_ess(draws))), (
        flat.mean(0),
        mean,
    )
    # covariance: cov_ij is the mean of z_i z_j (z = theta - mean), whose sd for a Gaussian is
    # sqrt(s_i^2 s_j^2 + cov_ij^2); its ESS is that of the products
    z = draws - mean
    ess_zz = _ess((z[..., :, None] * z[..., None, :]).reshape(*z.shape[:2], 4)).reshape(2, 2)
    se = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / ess_zz)
    assert np.all(np.abs(np.cov(flat.T) - cov) <= 4 * se), (np.cov(flat.T), cov)
    # predictive mean and variance of f(x) = [x, 1] . theta on the grid: g' mean and g' Sigma g;
    # the relative standard error of a Gaussian's variance is sqrt(2 / ESS of (f - mean)^2)
    g = np.column_stack([np.asarray(grid)[:, 0], np.ones(len(grid))])
    exact = np.einsum("ni,ij,nj->n", g, cov, g)
    f = draws @ g.T  # [chains, samples, grid]
    rel = 4 * np.sqrt(2 / _ess((f - g @ mean) ** 2))
    assert np.all(np.abs(ref.epistemic[:, 0] - exact) <= rel * exact)
    assert np.all(np.abs(ref.mean[:, 0] - g @ mean) <= 4 * np.sqrt(exact / _ess(f)))
    # the gate (R-hat <= 1.01, bulk ESS >= 400, no divergence) passes: chains that mix, this
    # long, stay under R-hat 1.01 but for a chance of about 1e-6 per quantity
    bound = max(_mixing_rhat_bound(draws).max(), _mixing_rhat_bound(f).max())
    assert ref.diagnostics.rhat_max <= bound < FAST.max_rhat
    assert ref.diagnostics.ok and ref.diagnostics.divergences == 0
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
    pos = ref.chains.positions
    theta = np.stack(
        [
            np.asarray(pos["Dense_0"]["kernel"])[..., 0, 0],
            np.asarray(pos["Dense_0"]["bias"])[..., 0],
        ],
        axis=-1,
    ).astype(np.float64)  # [chains, samples, (w, b)]
    xe = np.asarray(x_eval, np.float64)[:, 0]
    p = special.expit(w[..., None] * xe + b[..., None])  # on the quadrature grid, [.., .., 4]
    p_s = special.expit(theta[..., :1] * xe + theta[..., 1:])  # the draws' [chains, samples, 4]
    mean = np.einsum("ij,ijk->k", weights, p)
    # each moment is a mean over draws of g = p, (p - mean)^2 or p (1 - p): within 4 Monte Carlo
    # standard errors, sd_g / sqrt(ESS_g), with sd_g by quadrature and ESS_g from the chains
    for got, g, g_s in [
        (ref.mean[:, 0], p, p_s),
        (ref.epistemic[:, 0], (p - mean) ** 2, (p_s - mean) ** 2),
        (ref.aleatoric[:, 0], p * (1 - p), p_s * (1 - p_s)),
    ]:
        got, exact = np.asarray(got, np.float64), np.einsum("ij,ijk->k", weights, g)
        sd = np.sqrt(np.einsum("ij,ijk->k", weights, (g - exact) ** 2))
        assert np.all(np.abs(got - exact) <= 4 * sd / np.sqrt(_ess(g_s))), (got, exact)
    # the gate passes: chains that mix, this long, stay under R-hat 1.01 but for a ~1e-6 chance
    assert np.all(_mixing_rhat_bound(theta) < cfg.max_rhat)
    assert np.all(_mixing_rhat_bound(p_s) < cfg.max_rhat)
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
    assert np.all(rhat <= _mixing_rhat_bound(iid)) and np.all(_mixing_rhat_bound(iid) < 1.01)
    # the relative sd of an ESS estimate is about sqrt(2 (2 M + 1) / N) for M autocorrelation
    # lags summed (Sokal): ~0.03 for iid draws (M of a few lags), N = 8000, so 0.8 N is > 5 sd
    assert np.all(ess > 0.8 * 8000)
    rho = 0.9  # AR(1): ESS = N (1 - rho) / (1 + rho)
    noise = rng.normal(size=(4, 16000, 1))
    noise[:, 0] /= np.sqrt(1 - rho**2)  # start in the stationary law
    ar = signal.lfilter([np.sqrt(1 - rho**2)], [1, -rho], noise, axis=1)
    _, ess = mcmc.split_rhat_and_bulk_ess(ar)
    # M ~ 35 lags here: relative sd sqrt(2 * 71 / 64000) = 0.047, so rel=0.25 is > 5 sd
    assert ess[0] == pytest.approx(64000 * (1 - rho) / (1 + rho), rel=0.25)
    shifted = iid + np.array([0, 0, 0, 1.0])[:, None, None]  # one chain elsewhere
    rhat, _ = mcmc.split_rhat_and_bulk_ess(shifted)
    # a 1-sd shift of 2 of the 8 split chains: R-hat ~ 1.09, far above a mixing chain's ~1.003
    assert np.all(rhat > 1.05) and np.all(_mixing_rhat_bound(iid) < 1.05)


def test_ess_is_blackjax_effective_sample_size():
    """The numpy ESS against BlackJAX's (float32 there: rel 1e-4), on AR(1) chains, chains apart,
    ties, a constant, a quantity constant within one chain, one chain, odd lengths, a NaN."""
    rng = np.random.default_rng(1)
    for m, n, rho in [(4, 501, 0.9), (1, 6, -0.4)]:  # BlackJAX compiles for each shape
        x = signal.lfilter([1], [1, -rho], rng.normal(size=(m, n, 6)), axis=1)
        x[..., 1] += 3 * rng.normal(size=(m, 1))
        x[..., 2] = np.round(x[..., 2])
        x[..., 3] = 1.5
        x[0, :, 4] = 7.0
        x[0, 0, 5] = np.nan
        ours = diagnostics._ess(x)
        ref = np.asarray(blackjax.diagnostics.effective_sample_size(jnp.asarray(x, jnp.float32)))
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


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
    cfg = mcmc.McmcConfig(num_warmup=200, num_samples=3000, progress=False)
    chains = mcmc.sample(jax.random.key(1), lambda p: -potential(p, x, y), init, cfg)
    w = np.asarray(chains.positions["w"], np.float64)
    assert np.all(np.sign(w) == np.sign(init["w"])[:, None])  # each chain stayed in its mode
    diag = mcmc.diagnose(chains, None, cfg)
    # stuck chains: the rank-normalised draws of the 4 chains in the w < 0 mode are the lower
    # half-normal, those in w > 0 the upper, so with 8 split chains of n draws R-hat^2 = 1 +
    # (8 / 7) (2 / pi) / (1 - 2 / pi) + O(1 / n): R-hat = 1.73 whatever the draws
    stuck = np.sqrt(1 + 8 / 7 * (2 / np.pi) / (1 - 2 / np.pi))
    assert diag.rhat_max_params == pytest.approx(stuck, abs=0.05)
    assert not diag.ok and any("R-hat" in f for f in diag.failures)
    # gating on the predictions instead: f(x) = w^2 x is the same in both modes, so these chains
    # mix, and their R-hat lies under _mixing_rhat_bound, itself under the gate's 1.01 at this
    # length (~4 000 ESS): no R-hat failure
    preds = w[..., None] ** 2 * np.array([0.5, 1.0, 2.0])
    gated = mcmc.diagnose(chains, preds, dataclasses.replace(cfg, gate="predictive"))
    bound = _mixing_rhat_bound(preds).max()
    assert gated.rhat_max <= bound < cfg.max_rhat, (gated.rhat_max, bound)
    assert gated.rhat_max_params == diag.rhat_max_params  # still reported, not gated
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


def test_block_moments_merge_to_the_moments_of_any_resample():
    """Ground truth: the moments of the draws themselves, all of them and a resample that takes
    whole blocks with multiplicities."""
    positions = {"w": jax.random.normal(jax.random.key(1), (3, 37, 2))}
    x = jnp.linspace(-1, 1, 5)[:, None]

    def predict(p, xx):
        return jax.nn.sigmoid(xx * p["w"][0] + p["w"][1])  # [N, 1]

    blocks = moments.block_moments(predict, positions, x, blocks_per_chain=4, sample_chunk=10)
    assert blocks.count.tolist() == [10, 9, 9, 9] * 3 and blocks.mean.shape == (12, 5, 1)
    draws = np.asarray(jax.vmap(jax.vmap(lambda p: predict(p, x)))(positions), np.float64)
    per_block = [draws[c][i] for c in range(3) for i in np.array_split(np.arange(37), 4)]
    weights = np.random.default_rng(0).multinomial(12, np.full(12, 1 / 12), size=3)
    merged = moments.merge_blocks(blocks, weights)
    for row, w in enumerate(weights):
        resample = np.concatenate([b for b, k in zip(per_block, w, strict=True) for _ in range(k)])
        np.testing.assert_allclose(merged.mean[row], resample.mean(0), rtol=1e-6)
        np.testing.assert_allclose(merged.variance[row], resample.var(0), rtol=1e-5)
        np.testing.assert_allclose(merged.ale[row], (resample * (1 - resample)).mean(0), rtol=1e-6)
    total = moments.merge_blocks(blocks)
    np.testing.assert_allclose(total.variance, draws.reshape(-1, 5, 1).var(0), rtol=1e-5)
    boot = moments.block_bootstrap(blocks, resamples=7, seed=0, chunk=3)
    assert boot.variance.shape == (7, 5, 1)
    with pytest.raises(ValueError, match="blocks_per_chain"):
        moments.block_moments(predict, positions, x, blocks_per_chain=38)
