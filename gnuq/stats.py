"""Agreement statistics between an estimate and its reference (with block-bootstrap confidence
intervals), summaries across seeds, and the statistics of predicting a binary outcome from scores
(AUROC of a logistic regression over random train/test splits, paired bootstrap,
Benjamini-Hochberg)."""

import warnings
from collections.abc import Sequence
from typing import NamedTuple

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


class Agreement(NamedTuple):
    """Pearson r and Spearman rho with their bootstrap intervals ``(low, high)``."""

    pearson: float
    spearman: float
    pearson_ci: tuple[float, float]
    spearman_ci: tuple[float, float]


def grid_blocks(points, per_axis: int) -> np.ndarray:
    """Labels ``[G]`` of spatial blocks: every coordinate of ``points [G, D]`` cut into
    ``per_axis`` equal-width bins over its range, a block per occupied cell of that lattice."""
    pts = np.asarray(points, np.float64)
    pts = pts[:, None] if pts.ndim == 1 else pts
    lo, hi = pts.min(0), pts.max(0)
    width = np.where(hi > lo, (hi - lo) / per_axis, 1.0)
    bins = np.minimum(((pts - lo) / width).astype(int), per_axis - 1)
    return np.unique(bins, axis=0, return_inverse=True)[1].ravel()


def bootstrap_agreement(
    estimate,
    reference,
    cell_blocks,
    *,
    reference_replicates=None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> Agreement:
    """Pearson r and Spearman rho of ``estimate`` vs ``reference`` with percentile intervals
    from a two-way block bootstrap (``bootstrap_agreements`` of one estimate)."""
    return bootstrap_agreements(
        [estimate], reference, cell_blocks, reference_replicates=reference_replicates,
        resamples=resamples, level=level, seed=seed, chunk=chunk,
    )[0]  # fmt: skip


def bootstrap_agreements(
    estimates: Sequence,
    reference,
    cell_blocks,
    *,
    reference_replicates=None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> list[Agreement]:
    """Pearson r and Spearman rho of each of ``estimates`` vs ``reference`` with percentile
    intervals from a two-way block bootstrap (every estimate sees the same resamples, and the
    reference's ranks are computed once per resample).

    Resample i draws spatial blocks of evaluation cells with replacement (labels
    ``cell_blocks [G]``: neighbouring cells are not independent, so whole blocks move) and, when
    ``reference_replicates [R, G(, K)]`` is given (R = resamples; e.g. the reference recomputed
    from a resample of blocks of posterior draws, ``gnuq.baselines.moments.block_bootstrap``),
    compares with its row i instead of ``reference``. A cell drawn m times counts m times in
    both correlations (weighted Pearson; Spearman on weighted mid-ranks). The interval thus
    covers the grid's and the reference's Monte Carlo error; a seed's data and MAP are fixed.

    Each estimate and ``reference`` are ``[G]`` or ``[G, K]``; the K columns of a cell move
    together and are pooled, as in ``class_correlations``'s "overall".
    """
    ests = [np.asarray(e, np.float64) for e in estimates]
    ref = np.asarray(reference, np.float64)
    labels = np.asarray(cell_blocks)
    if any(e.shape != ref.shape for e in ests) or ref.shape[0] != labels.shape[0]:
        raise ValueError(
            f"estimates {[e.shape for e in ests]}, reference {ref.shape} and cell_blocks "
            f"{labels.shape} must share the leading (cell) axis, and the estimates and the "
            "reference their shape"
        )
    if reference_replicates is not None:
        reference_replicates = np.asarray(reference_replicates)
        if reference_replicates.shape[1:] != ref.shape:
            raise ValueError(
                f"reference_replicates {reference_replicates.shape} must be [R, *{ref.shape}]"
            )
        resamples = len(reference_replicates)
    points = [correlations(e, ref) for e in ests]
    per_cell = ref[0].size
    flat = [e.reshape(-1) for e in ests]
    _, index = np.unique(labels, return_inverse=True)
    n_labels = index.max() + 1
    rng = np.random.default_rng(seed)
    samples = []  # per chunk: [rows, estimates, 2]
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        tiles = rng.multinomial(n_labels, np.full(n_labels, 1 / n_labels), size=rows)
        w = np.repeat(tiles[:, index], per_cell, axis=1).astype(np.float64)  # [R, G * K]
        refs = (
            ref.reshape(-1)
            if reference_replicates is None
            else reference_replicates[start : start + rows].reshape(rows, -1).astype(np.float64)
        )
        ref_ranks = _weighted_ranks(refs, w)
        samples.append(
            np.stack(
                [
                    np.stack(
                        [
                            _weighted_pearson(e, refs, w),
                            _weighted_pearson(_weighted_ranks(e, w), ref_ranks, w),
                        ],
                        axis=1,
                    )
                    for e in flat
                ],
                axis=1,
            )
        )
    samples = np.concatenate(samples)
    bad = np.mean(~np.isfinite(samples))
    if bad > 0.01:
        warnings.warn(
            f"bootstrap_agreements: {bad:.1%} of resamples have an undefined correlation (a "
            "constant resample); the interval ignores them",
            RuntimeWarning,
            stacklevel=2,
        )
    tail = (1 - level) / 2
    lo, hi = np.nanquantile(samples, [tail, 1 - tail], axis=0)  # [estimates, 2] each
    return [
        Agreement(r, rho, (float(lo[i, 0]), float(hi[i, 0])), (float(lo[i, 1]), float(hi[i, 1])))
        for i, (r, rho) in enumerate(points)
    ]


def seed_interval(
    values, within=None, level: float = 0.95, clip: bool = True
) -> tuple[float, float]:
    """A ``level`` interval for the mean over seeds of ``values``: mean +- t_{n-1} s / sqrt(n)
    (each seed's value already carries its own Monte Carlo error, so s covers it), clipped to
    a correlation's [-1, 1] unless ``clip`` is False; for one seed, that seed's own interval
    ``within`` (low, high)."""
    v = np.asarray(values, np.float64)
    if v.size == 1:
        if within is None:
            raise ValueError("one seed: pass its own interval as within")
        return float(within[0]), float(within[1])
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    lo, hi = v.mean() - half, v.mean() + half
    return (float(max(-1.0, lo)), float(min(1.0, hi))) if clip else (float(lo), float(hi))


def _weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of ``a, b`` (``[M]`` or ``[R, M]``) with multiplicities ``w [R, M]``."""
    total = w.sum(axis=1, keepdims=True)
    da = a - (w * a).sum(axis=1, keepdims=True) / total
    db = b - (w * b).sum(axis=1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * da * db).sum(1) / np.sqrt((w * da**2).sum(1) * (w * db**2).sum(1))


def _weighted_ranks(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise mid-ranks of ``values [M]`` (shared by every row) or ``[R, M]`` when entry j
    appears ``w[:, j]`` times: the ranks ``scipy.stats.rankdata`` gives the array with every
    entry repeated (ties share their mean rank)."""
    shared = values.ndim == 1
    v2 = values[None] if shared else values
    order = np.argsort(v2, axis=1)  # ties are grouped below, so no stable sort is needed
    v = np.take_along_axis(v2, order, axis=1)
    m = v.shape[1]
    cols = np.arange(m)[None]
    change = v[:, 1:] != v[:, :-1]
    starts = np.concatenate([np.ones((len(v), 1), bool), change], axis=1)
    ends = np.concatenate([change, np.ones((len(v), 1), bool)], axis=1)
    first = np.maximum.accumulate(np.where(starts, cols, 0), axis=1)  # tie group's first column
    last = np.minimum.accumulate(np.where(ends, cols, m - 1)[:, ::-1], axis=1)[:, ::-1]
    if shared:
        order, first, last = order[0], first[0], last[0]
        cum = np.cumsum(w[:, order], axis=1)
        before = np.where(first > 0, cum[:, np.maximum(first - 1, 0)], 0.0)
        mid = before + (cum[:, last] - before + 1) / 2
        ranks = np.empty_like(mid)
        ranks[:, order] = mid
        return ranks
    cum = np.cumsum(np.take_along_axis(w, order, axis=1), axis=1)
    before = np.where(first > 0, np.take_along_axis(cum, np.maximum(first - 1, 0), 1), 0.0)
    mid = before + (np.take_along_axis(cum, last, 1) - before + 1) / 2
    ranks = np.empty_like(mid)
    np.put_along_axis(ranks, order, mid, axis=1)
    return ranks


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


def auroc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting
    1/2 (the Mann-Whitney U statistic over n_pos n_neg)."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positive and negative labels")
    ranks = stats.rankdata(scores)  # average ranks for ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _feature_matrix(features) -> np.ndarray:
    """Features ``[N]`` or ``[N, F]`` as a float64 ``[N, F]`` matrix."""
    x = np.asarray(features, np.float64)
    return x[:, None] if x.ndim == 1 else x


def logistic_fit(features, labels, l2: float = 1e-3, steps: int = 100) -> np.ndarray:
    """Weights ``[F + 1]`` (bias last, on the original feature scale) of an L2-penalised logistic
    regression, by Newton's method with step halving on standardised features u:

        minimise sum_n [log(1 + exp(z_n)) - y_n z_n] + l2 / 2 ||v||^2,  z = u v + b

    (the penalty, on the standardised weights v and not on the bias, is small: it only keeps
    separable data finite). Warns when the gradient has not vanished after ``steps`` steps.
    """
    x = _feature_matrix(features)
    y = np.asarray(labels, np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf")
    mean, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    design = np.column_stack([(x - mean) / sd, np.ones(len(x))])
    penalty = l2 * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not penalised

    def objective(w: np.ndarray) -> float:
        z = design @ w
        return float(np.sum(np.logaddexp(0, z) - y * z) + w @ penalty @ w / 2)

    w = np.zeros(design.shape[1])
    value, tol = objective(w), 1e-7 * max(1.0, len(y))  # gradient of the summed loss
    for _ in range(steps):
        p = 1 / (1 + np.exp(-design @ w))
        grad = design.T @ (p - y) + penalty @ w
        if np.max(np.abs(grad)) < tol:
            break
        hess = (design * (p * (1 - p))[:, None]).T @ design + penalty
        step = np.linalg.solve(hess + 1e-10 * np.eye(len(w)), grad)
        t = 1.0
        while objective(w - t * step) > value and t > 1e-10:  # halve until it descends
            t /= 2
        w, value = w - t * step, objective(w - t * step)
    else:
        warnings.warn(
            f"logistic_fit: gradient {np.max(np.abs(grad)):.2e} > {tol:.1e} after {steps} "
            "Newton steps",
            stacklevel=2,
        )
    weights = w[:-1] / sd  # back to the original feature scale
    return np.append(weights, w[-1] - weights @ mean)


def logistic_scores(weights: np.ndarray, features) -> np.ndarray:
    """``[N]`` logits [x, 1] w of a ``logistic_fit``."""
    x = _feature_matrix(features)
    return x @ weights[:-1] + weights[-1]


def random_splits(
    labels, splits: int, seed: int, test_fraction: float = 0.2
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` random ``(train, test)`` index pairs, stratified: ``test_fraction`` of each
    class held out (at least one item of each), so every split sees both classes on each side.
    The splits depend only on the labels and the seed, so every score of the same items sees
    the same splits (paired)."""
    y = np.asarray(labels, bool).ravel()
    if min(y.sum(), (~y).sum()) < 2:
        raise ValueError(
            f"{y.sum()} positive and {(~y).sum()} negative labels: each class needs at least 2 "
            "(one for training, one for testing)"
        )
    classes = [np.flatnonzero(y), np.flatnonzero(~y)]
    n_test = [min(len(c) - 1, max(1, round(test_fraction * len(c)))) for c in classes]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        test = np.concatenate(
            [rng.permutation(c)[:k] for c, k in zip(classes, n_test, strict=True)]
        )
        train = np.setdiff1d(np.arange(len(y)), test)
        out.append((train, np.sort(test)))
    return out


def split_aurocs(features, labels, splits: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``[S]`` held-out AUROCs: per ``(train, test)`` split, a ``logistic_fit`` on the train part
    scores the test part. ``features`` ``[N]`` or ``[N, F]``, ``labels`` ``[N]``."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, bool)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} feature rows but {len(y)} labels")
    return np.asarray(
        [auroc(logistic_scores(logistic_fit(x[tr], y[tr]), x[te]), y[te]) for tr, te in splits]
    )


def out_of_fold_scores(features, labels, folds: int, seed: int) -> np.ndarray:
    """``[N]`` logits of a ``logistic_fit``, each item scored by the fit on the other folds of a
    stratified ``folds``-fold partition (each class dealt round-robin after a shuffle)."""
    x = _feature_matrix(features)
    y = np.asarray(labels, bool)
    if min(y.sum(), (~y).sum()) < folds:
        raise ValueError(f"{y.sum()} positive and {(~y).sum()} negative labels for {folds} folds")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for members in (np.flatnonzero(y), np.flatnonzero(~y)):
        fold[rng.permutation(members)] = np.arange(len(members)) % folds
    out = np.empty(len(y))
    for k in range(folds):
        w = logistic_fit(x[fold != k], y[fold != k])
        out[fold == k] = logistic_scores(w, x[fold == k])
    return out


def bootstrap_aurocs(scores, labels, resamples: int, seed: int) -> np.ndarray:
    """``[resamples]`` AUROCs of ``scores`` on stratified bootstrap resamples of the items (each
    class resampled with replacement to its own size). The resamples depend only on the labels
    and the seed, so scores of the same items see the same resamples (paired)."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUROC needs both positive and negative labels")
    idx = np.column_stack(
        [rng.choice(pos, (resamples, len(pos))), rng.choice(neg, (resamples, len(neg)))]
    )
    ranks = stats.rankdata(s[idx], axis=1)  # average ranks for ties, per resample
    n_pos, n_neg = len(pos), len(neg)
    return (ranks[:, :n_pos].sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_p(draws) -> float:
    """Two-sided bootstrap p of a statistic's draws against 0:
    min(1, 2 (1 + #{draws on the far side of 0}) / (1 + #draws)), the far side being the one
    opposite the draws' mean (the +1 keeps p above 0: a bootstrap cannot show less)."""
    d = np.asarray(draws, np.float64).ravel()
    far = np.sum(d <= 0) if d.mean() > 0 else np.sum(d >= 0)
    return min(1.0, 2 * (1 + float(far)) / (1 + d.size))


def paired_bootstrap(
    differences, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float, float, float]:
    """Mean of paired differences ``[N]`` with a percentile bootstrap interval and a two-sided p:
    the N pairs resampled with replacement ``resamples`` times,

        p = min(1, 2 (1 + #{resampled means on the far side of 0}) / (1 + resamples)),

    the far side being the one opposite the observed mean (the +1 keeps p above 0: a bootstrap
    cannot show a probability below 1 / resamples). Returns ``(mean, lo, hi, p)``.
    """
    d = np.asarray(differences, np.float64).ravel()
    if d.size < 2 or not np.all(np.isfinite(d)):
        raise ValueError(f"need at least 2 finite differences, got {d.tolist()}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    if d.mean() == 0:
        return 0.0, float(lo), float(hi), 1.0
    return float(d.mean()), float(lo), float(hi), bootstrap_p(means)


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``)."""
    return stats.false_discovery_control(np.asarray(p_values, np.float64), method="bh")
