"""The sampler's settings and chains: what would fail after sampling is refused before it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gnuq.baselines import diagnostics, mcmc, sampler


@pytest.mark.parametrize(
    "setting,hint",
    [
        ({"num_samples": 1}, r"num_samples must be at least 4.*2 draws per half"),
        ({"num_samples": 3}, r"num_samples must be at least 4"),
        ({"sample_chunk": 0}, r"sample_chunk .* must be at least 1, got 0"),
        ({"diagnostic_inputs": 0}, r"diagnostic_inputs .* must be at least 1, got 0"),
        ({"diagnostic_inputs": -5}, r"diagnostic_inputs .* must be at least 1, got -5"),
        ({"num_samples": 8}, r"moment_blocks .* between 1 and num_samples = 8, got 10"),
        ({"moment_blocks": 0}, r"moment_blocks .* between 1 and num_samples = 1000, got 0"),
    ],
)
def test_settings_that_could_only_fail_after_sampling_are_refused_at_once(setting, hint):
    with pytest.raises(ValueError, match=hint):
        sampler.McmcConfig(**setting)


@pytest.mark.filterwarnings("ignore:Degrees of freedom")  # the one-draw halves, on purpose
def test_the_fewest_samples_allowed_are_the_fewest_the_diagnostics_can_read():
    """Ground truth: split R-hat and bulk ESS themselves, on MIN_SAMPLES draws and one fewer."""
    draws = np.random.default_rng(0).normal(size=(4, sampler.MIN_SAMPLES, 3))
    rhat, ess = diagnostics.split_rhat_and_bulk_ess(draws)
    assert np.all(np.isfinite(rhat)) and np.all(np.isfinite(ess))
    with pytest.raises((AssertionError, ValueError)):  # one draw per half: no variance
        diagnostics.split_rhat_and_bulk_ess(draws[:, : sampler.MIN_SAMPLES - 1])
    sampler.McmcConfig(num_samples=sampler.MIN_SAMPLES, moment_blocks=1)  # accepted


def test_mcmc_exposes_the_samplers_names():
    assert mcmc.McmcConfig is sampler.McmcConfig and mcmc.sample is sampler.sample


def test_the_progress_bar_changes_no_draw():
    """The bar is fed by a callback made per ``sample`` call (no module state): with it on,
    two chains run one after the other draw exactly what they draw with it off."""

    def logdensity(p):
        return -0.5 * jnp.sum(p["x"] ** 2)

    draws = {}
    for progress in (False, True):
        cfg = sampler.McmcConfig(
            num_warmup=20, num_samples=8, num_chains=2, chain_method="sequential",
            progress=progress, moment_blocks=4,
        )  # fmt: skip
        init = {"x": jnp.zeros((2, 3))}
        draws[progress] = sampler.sample(jax.random.key(0), logdensity, init, cfg).positions["x"]
    assert draws[True].shape == (2, 8, 3)
    np.testing.assert_array_equal(draws[True], draws[False])
