"""The streamed, resumable reference: a closed-form posterior; resuming changes no number."""

import dataclasses

import jax
import numpy as np
import pytest
from test_mcmc import _ess, _linear_regression, _mixing_rhat_bound

from gnuq import likelihoods, models, problems, train
from gnuq.baselines import mcmc, mcmc_resumable
from gnuq.baselines.mcmc_resumable import StreamConfig


def test_bayesian_linear_regression_predictive_variance_matches_closed_form():
    """Var_s[f(x)] streamed over draws vs g' Sigma g of the exact Gaussian posterior, within 4
    Monte Carlo standard errors (sd / sqrt(ESS), the ESS of the quantity averaged)."""
    p, x, y, m, lik, map_params, mean, cov = _linear_regression()
    grid = p.grid(25)
    cfg = mcmc.McmcConfig(num_warmup=500, num_samples=2000, progress=False)
    ref = mcmc_resumable.reference(
        jax.random.key(2), m.apply, lik, x, y, map_params, grid, 1.0, cfg, StreamConfig(segment=300)
    )
    assert ref.chains.positions["subset"].shape == (4, 2000, 2)  # both parameters traced
    g = np.column_stack([np.asarray(grid)[:, 0], np.ones(len(grid))])  # (slope, intercept)
    exact = np.einsum("ni,ij,nj->n", g, cov, g)
    # the traces are in ravel_pytree order, (bias, kernel): f(x) = [x, 1] . (kernel, bias)
    theta = np.asarray(ref.chains.positions["subset"], np.float64)[..., ::-1]
    f = theta @ g.T  # [chains, samples, grid]
    rel = 4 * np.sqrt(2 / _ess((f - g @ mean) ** 2))  # a Gaussian's variance: sd sqrt(2) var
    assert np.all(np.abs(ref.epistemic[:, 0] - exact) <= rel * exact)
    assert np.all(np.abs(ref.mean[:, 0] - g @ mean) <= 4 * np.sqrt(exact / _ess(f)))
    np.testing.assert_allclose(ref.aleatoric, p.noise_var)
    # the gate passes: chains that mix, this long, stay under R-hat 1.01 but for a ~1e-6 chance
    assert np.all(_mixing_rhat_bound(np.concatenate([theta, f], axis=-1)) < cfg.max_rhat)
    assert ref.diagnostics.ok and ref.diagnostics.divergences == 0


class _Stop(Exception):
    pass


def _softmax_setup():
    prob = problems.get("clusters")
    lik = likelihoods.get("categorical")
    x, y = prob.sample(jax.random.key(0), 40)
    m = models.mlp(jax.random.key(1), 2, (), 4)
    fit = train.fit_map(m.apply, lik, m.params, x, y, train.MapConfig())
    cfg = mcmc.McmcConfig(num_warmup=50, num_samples=70, num_chains=2, progress=False)
    args = (jax.random.key(3), m.apply, lik, x, y, fit.params, prob.grid(6), 1.0, cfg)
    return args, StreamConfig(segment=20, param_subset=5)


@pytest.mark.filterwarnings("ignore:MCMC reference failed its gate")  # chains kept short
def test_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    args, stream = _softmax_setup()
    whole = mcmc_resumable.reference(*args, stream, log=lambda msg: None)
    ckpt = tmp_path / "chains.npz"
    seen = []

    def stop_after_two_segments(msg: str) -> None:
        seen.append(msg)
        if sum("segment" in m for m in seen) == 2:
            raise _Stop  # as if killed right after the second checkpoint

    with pytest.raises(_Stop):
        mcmc_resumable.reference(*args, stream, checkpoint=ckpt, log=stop_after_two_segments)
    assert ckpt.exists()
    messages = []
    resumed = mcmc_resumable.reference(*args, stream, checkpoint=ckpt, log=messages.append)
    assert any("resuming" in m for m in messages)
    assert not any("warm-up" in m for m in messages)  # warm-up was checkpointed
    np.testing.assert_array_equal(resumed.epistemic, whole.epistemic)
    np.testing.assert_array_equal(resumed.aleatoric, whole.aleatoric)
    np.testing.assert_array_equal(resumed.chains.num_steps, whole.chains.num_steps)
    assert resumed.chains.num_steps.shape == (2, 70)  # the last, partial segment trimmed
    assert resumed.diagnostics == whole.diagnostics


@pytest.mark.filterwarnings("ignore:MCMC reference failed its gate")
def test_unreadable_checkpoint_warns_and_starts_afresh(tmp_path):
    args, stream = _softmax_setup()
    ckpt = tmp_path / "chains.npz"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        ref = mcmc_resumable.reference(*args, stream, checkpoint=ckpt, log=lambda msg: None)
    again = mcmc_resumable.reference(*args, stream, log=lambda msg: None)
    np.testing.assert_array_equal(ref.epistemic, again.epistemic)


@pytest.mark.filterwarnings("ignore:MCMC reference failed its gate")
@pytest.mark.parametrize("change", ["segment", "grouping"])
def test_checkpoint_of_other_settings_is_not_resumed(tmp_path, change):
    args, stream = _softmax_setup()
    with_method = lambda m: (*args[:-1], dataclasses.replace(args[-1], chain_method=m))  # noqa: E731
    args = with_method("sequential")
    ckpt = tmp_path / "chains.npz"
    mcmc_resumable.reference(*args, stream, checkpoint=ckpt, log=lambda msg: None)
    if change == "segment":
        stream = StreamConfig(segment=30, param_subset=5)
    else:  # all chains together instead of one by one: other groups, same draws
        args = with_method("vmap")
    with pytest.warns(UserWarning, match="other chain, grouping or segment settings"):
        ref = mcmc_resumable.reference(*args, stream, checkpoint=ckpt, log=lambda msg: None)
    fresh = mcmc_resumable.reference(*args, stream, log=lambda msg: None)
    np.testing.assert_array_equal(ref.epistemic, fresh.epistemic)


def test_stream_config_rejects_nonsense():
    with pytest.raises(ValueError, match="segment"):
        StreamConfig(segment=0)
