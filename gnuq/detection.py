"""The statistics of predicting a binary outcome (a wrong answer) from uncertainty scores: AUROC
of a logistic regression over random train/test splits or out-of-fold, its bootstrap, the
paired bootstrap of two scores, and Benjamini-Hochberg over many comparisons."""

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats


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
