"""The paper's claims as tests decided against intervals: holds, fails or inconclusive.

A claim states its threshold in the code, before any number is computed, and is decided by the
95% interval of the statistic it reads: it holds when the whole interval lies on the claimed
side of the threshold, fails when the whole interval lies on the other side, and is inconclusive
when the interval straddles it. A claim made of several conditions holds when all hold and fails
when any fails. Each line shows our estimate and interval beside the threshold and the paper's
value.
"""

from collections.abc import Sequence

import numpy as np

from experiments.harness.report import interval_cell
from gnuq import stats

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"


def decide(interval: tuple[float, float], threshold: float, at_least: bool = True) -> str:
    """``holds`` / ``fails`` / ``inconclusive`` for "statistic >= threshold" (``at_least``)
    or "statistic <= threshold", from the statistic's interval (low, high)."""
    lo, hi = interval
    above, below = lo >= threshold, hi < threshold
    if not at_least:
        above, below = hi <= threshold, lo > threshold
    return HOLDS if above else FAILS if below else INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """All hold: holds; any fails: fails; otherwise inconclusive."""
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return FAILS if FAILS in verdicts else INCONCLUSIVE


def seed_mean_interval(records: Sequence[dict], stat: str) -> tuple[float, tuple[float, float]]:
    """The mean over seeds of ``stat`` and its interval (``gnuq.stats.seed_interval``)."""
    if not records:
        raise ValueError(f"no records for {stat}: the claim has nothing to read")
    values = [r[stat] for r in records]
    return float(np.mean(values)), stats.seed_interval(values, records[0].get(f"{stat}_ci"))


def line(verdict: str, text: str, evidence: str) -> str:
    """One Markdown line of the claims list."""
    return f"- **{verdict}**: {text} ({evidence})"


def threshold_evidence(
    label: str, records: Sequence[dict], stat: str, threshold: float, at_least: bool = True,
    paper: float | None = None,
) -> tuple[str, str]:  # fmt: skip
    """``(verdict, "label: 0.97 [0.95, 0.98] >= 0.9, paper 0.95")`` for one statistic."""
    _, interval = seed_mean_interval(records, stat)
    verdict = decide(interval, threshold, at_least)
    sign = "≥" if at_least else "≤"
    paper_text = "" if paper is None else f", paper {paper:.2f}"
    cell = interval_cell(records, stat)
    return verdict, f"{label} {cell} vs {sign} {threshold}{paper_text}"


def difference_evidence(
    label: str, a: Sequence[dict], b: Sequence[dict], stat: str, threshold: float
) -> tuple[str, str]:
    """``(verdict, evidence)`` for "mean(a - b) >= threshold", paired by seed: the interval is
    ``seed_interval`` of the per-seed differences (with one seed there is no interval for a
    difference of two correlations of one map: inconclusive unless the claim is met or missed
    by both intervals' full width)."""
    by_seed = {r["seed"]: r[stat] for r in b}
    diffs = [r[stat] - by_seed[r["seed"]] for r in a if r["seed"] in by_seed]
    if not diffs:
        raise ValueError(f"no seed has both records for {label}")
    if len(diffs) == 1:  # the widest difference the two intervals allow
        (ra,), (rb,) = [r for r in a if r["seed"] in by_seed], b
        lo_a, hi_a = ra[f"{stat}_ci"]
        lo_b, hi_b = rb[f"{stat}_ci"]
        interval = (lo_a - hi_b, hi_a - lo_b)
    else:
        interval = stats.seed_interval(diffs, clip=False)  # a difference spans [-2, 2]
    verdict = decide(interval, threshold)
    mean = float(np.mean(diffs))
    return verdict, (
        f"{label} {mean:+.2f} [{interval[0]:+.2f}, {interval[1]:+.2f}] vs ≥ {threshold}"
    )
