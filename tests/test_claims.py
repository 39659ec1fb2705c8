"""Claims decided against intervals: the rule, and the evidence lines it prints."""

import pytest

from experiments.harness import claims


def test_decide_reads_the_whole_interval():
    assert claims.decide((0.91, 0.95), 0.9) == claims.HOLDS
    assert claims.decide((0.80, 0.89), 0.9) == claims.FAILS
    assert claims.decide((0.85, 0.95), 0.9) == claims.INCONCLUSIVE
    assert claims.decide((0.02, 0.10), 0.15, at_least=False) == claims.HOLDS
    assert claims.decide((0.16, 0.30), 0.15, at_least=False) == claims.FAILS
    assert claims.decide((0.10, 0.30), 0.15, at_least=False) == claims.INCONCLUSIVE
    assert claims.combine([claims.HOLDS, claims.HOLDS]) == claims.HOLDS
    assert claims.combine([claims.HOLDS, claims.INCONCLUSIVE]) == claims.INCONCLUSIVE
    assert claims.combine([claims.INCONCLUSIVE, claims.FAILS]) == claims.FAILS


def _rec(seed, r, ci=(0.0, 1.0)):
    return {"seed": seed, "pearson": r, "pearson_ci": list(ci)}


def test_evidence_uses_the_seed_interval():
    verdict, text = claims.threshold_evidence(
        "GN r", [_rec(0, 0.95), _rec(1, 0.96), _rec(2, 0.97)], "pearson", 0.9, paper=0.95
    )
    assert verdict == claims.HOLDS and "0.96 [0.94, 0.98]" in text and "paper 0.95" in text
    verdict, _ = claims.threshold_evidence("GN r", [_rec(0, 0.95, (0.85, 0.99))], "pearson", 0.9)
    assert verdict == claims.INCONCLUSIVE  # one seed: its own bootstrap interval decides
    with pytest.raises(ValueError, match="nothing to read"):
        claims.threshold_evidence("GN r", [], "pearson", 0.9)


def test_difference_evidence_pairs_seeds():
    la = [_rec(0, 0.9), _rec(1, 0.92), _rec(2, 0.91)]
    gn = [_rec(2, 0.5), _rec(0, 0.52), _rec(1, 0.5)]
    verdict, text = claims.difference_evidence("LA - GN r", la, gn, "pearson", 0.05)
    assert verdict == claims.HOLDS and "+0.40" in text
    one = claims.difference_evidence(
        "d", [_rec(0, 0.9, (0.8, 0.95))], [_rec(0, 0.85, (0.8, 0.9))], "pearson", 0.05
    )
    assert one[0] == claims.INCONCLUSIVE and "[-0.10, +0.15]" in one[1]
    # a difference of correlations spans [-2, 2]: its interval is not clipped to [-1, 1]
    la = [_rec(s, 0.96 + s / 100) for s in range(3)]
    gn = [_rec(s, -0.64 - s / 100) for s in range(3)]
    far = claims.difference_evidence("d", la, gn, "pearson", 0.05)
    assert "+1.62 [" in far[1] and "+1.00]" not in far[1]
