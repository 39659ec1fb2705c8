"""Agreement statistics between an estimate and its reference, and summaries across seeds."""

import numpy as np
from scipy import stats


def correlations(estimate, reference) -> tuple[float, float]:
    """Pearson r and Spearman rho between two arrays of the same shape (flattened).

    Raises when either input holds a NaN/inf or is constant, where a correlation is undefined:
    such a map is a bug upstream, never a number to report.
    """
    a = np.asarray(estimate, np.float64).ravel()
    b = np.asarray(reference, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {np.shape(estimate)} vs {np.shape(reference)}")
    for name, v in (("estimate", a), ("reference", b)):
        if not np.all(np.isfinite(v)):
            raise ValueError(f"the {name} contains NaN or inf")
        if np.ptp(v) == 0:
            raise ValueError(f"the {name} is constant: its correlation is undefined")
    return float(stats.pearsonr(a, b)[0]), float(stats.spearmanr(a, b)[0])


def class_correlations(estimate, reference) -> list[tuple[int | str, float, float]]:
    """``(class, r, rho)`` between ``[N, K]`` maps: per class, then pooled over all (input,
    class) pairs as class "overall"; with one column only "overall"."""
    estimate, reference = np.asarray(estimate), np.asarray(reference)
    if estimate.ndim != 2 or estimate.shape != reference.shape:
        raise ValueError(f"need two [N, K] maps, got {estimate.shape} and {reference.shape}")
    classes = range(estimate.shape[1]) if estimate.shape[1] > 1 else []
    per_class = [(c, *correlations(estimate[:, c], reference[:, c])) for c in classes]
    return [*per_class, ("overall", *correlations(estimate, reference))]


def spread(values) -> tuple[float, float, float]:
    """Mean, min and max of a list of numbers (the "mean [min, max] across seeds" of tables)."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.min()), float(v.max())


def welch(a, b) -> tuple[float, float, float]:
    """Welch's t-test of mean(a) vs mean(b): ``(t, two-sided p, Cohen's d)``.

    d = (mean(a) - mean(b)) / sqrt((var(a) + var(b)) / 2), sample variances (ddof 1).
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("Welch test inputs contain NaN or inf")
    t, p = stats.ttest_ind(a, b, equal_var=False)
    d = (a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float(t), float(p), float(d)
