"""The streamed, resumable reference: a closed-form posterior; resuming changes no number."""

import dataclasses

import jax
import numpy as np
import pytest
from test_mcmc import _linear_regression

from gnuq import likelihoods, models, problems, train
from gnuq.baselines import mcmc, mcmc_resumable
from gnuq.baselines.mcmc_resumable import StreamConfig


def test_bayesian_linear_regression_predictive_variance_matches_closed_form():
    """Var_s[f(x)] streamed over draws vs g' Sigma g of the exact Gaussian posterior."""
    p, x, y, m, lik, map_params, mean, cov = _linear_regression()
    grid = p.grid(25)
    cfg = mcmc.McmcConfig(num_warmup=500, num_samples=1000, progress=False)
    ref = mcmc_resumable.reference(
        jax.random.key(2), m.apply, lik, x, y, map_params, grid, 1.0, cfg, StreamConfig(segment=300)
    )
    g = np.column_stack([np.asarray(grid)[:, 0], np.ones(len(grid))])
    exact = np.einsum("ni,ij,nj->n", g, cov, g)
    _, ess = mcmc.split_rhat_and_bulk_ess(ref.chains.positions["subset"])
    rel = 4 * np.sqrt(2 / ess.min())  # the relative standard error of a variance is sqrt(2/ESS)
    np.testing.assert_allclose(ref.epistemic[:, 0], exact, rtol=rel)
    np.testing.assert_allclose(ref.mean[:, 0], g @ mean, atol=4 * np.sqrt(exact.max() / ess.min()))
    np.testing.assert_allclose(ref.aleatoric, p.noise_var)
    assert ref.diagnostics.ok and ref.diagnostics.divergences == 0
    assert ref.chains.positions["subset"].shape == (4, 1000, 2)  # both parameters traced


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
