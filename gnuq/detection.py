"""The statistics of predicting a binary outcome (a wrong answer) from uncertainty scores: AUROC
of a logistic regression over random train/test splits or out-of-fold, its bootstrap refitting
the regression in every resample (many weighted fits at once), the paired bootstrap of two
scores, and Benjamini-Hochberg over many comparisons."""

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


def weighted_logistic_fits(
    features, labels, weights, l2: float = 1e-3, steps: int = 100
) -> np.ndarray:
    """``[B, F + 1]`` weights of ``logistic_fit``, one per row of ``weights`` ``[B, N]``: row b
    fits the data set that repeats question n ``weights[b, n]`` times (0: absent), so each fit
    is standardised by its own weighted mean and sd and minimises

        sum_n weights[b, n] [log(1 + exp(z_n)) - y_n z_n] + l2 / 2 ||v||^2.

    All B fits take batched Newton steps at once (``[B, N]`` arithmetic and ``[B, F+1, F+1]``
    solves), for the refits of a bootstrap; a fit whose gradient has vanished stops moving.
    """
    x = _feature_matrix(features)
    y = np.asarray(labels, np.float64)
    m = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf")
    # work on globally standardised features, so the sums below do not cancel for features far
    # from 0 (gradient norms); each fit's own standardisation is an affine map of these
    shift, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    x1 = np.column_stack([(x - shift) / scale, np.ones(len(x))])  # [N, F + 1]
    f1 = x1.shape[1]
    total = m.sum(1)
    mean = m @ x1[:, :-1] / total[:, None]
    sd = np.sqrt(np.maximum(m @ x1[:, :-1] ** 2 / total[:, None] - mean**2, 0.0))
    sd[sd == 0] = 1.0
    # to_x1[b] maps a fit's standardised weights (v, bias) to weights on x1
    to_x1 = np.zeros((len(m), f1, f1))
    to_x1[:, np.arange(f1 - 1), np.arange(f1 - 1)] = 1 / sd
    to_x1[:, -1, :-1] = -mean / sd
    to_x1[:, -1, -1] = 1.0
    penalty = l2 * np.eye(f1)
    penalty[-1, -1] = 0.0
    # each fit reads only the questions it weights (about half of them in a bootstrap's training
    # folds), padded with weight 0, feature by feature ([B, F, L]: rows of a few hundred
    # elements beat stacked [L, F] matrices); with s = 1 - 2y the loss is softplus(s z) and
    # p - y = s q, q = sigmoid(s z)
    keep = np.argsort(m == 0, axis=1, kind="stable")[:, : int((m > 0).sum(1).max())]
    work = {
        "m": np.take_along_axis(m, keep, 1),
        "s": 1 - 2 * y[keep],
        "x": np.moveaxis(x1[:, :-1].T[:, keep], 0, 1),  # [B, F, L]
        "t": to_x1,
        "tol": 1e-7 * np.maximum(1.0, total),  # as logistic_fit's, on the repeated rows' count
        "row": np.arange(len(m)),
    }

    def terms(w: np.ndarray, sel) -> tuple[np.ndarray, np.ndarray]:
        """The objective and q of the working fits ``sel`` at standardised weights ``w``."""
        theta = (work["t"][sel] @ w[:, :, None])[..., 0]  # on x1
        z = np.einsum("bf,bfl->bl", theta[:, :-1], work["x"][sel]) + theta[:, -1:]
        sz = work["s"][sel] * z
        e = np.exp(-np.abs(sz))
        loss = np.einsum("bl,bl->b", work["m"][sel], np.maximum(sz, 0) + np.log1p(e))
        q = np.where(sz >= 0, 1, e) / (1 + e)
        return loss + np.einsum("bf,fg,bg->b", w, penalty, w) / 2, q

    def sums(v: np.ndarray) -> np.ndarray:
        """``[B, F + 1]`` sum_l v_bl x1_blf: v against each feature and the constant."""
        return np.column_stack([np.einsum("bl,bfl->bf", v, work["x"]), v.sum(1)])

    # every fit starts from the unweighted fit on all questions: the same optimum (the objective
    # is convex), fewer Newton steps
    start = logistic_fit(x1[:, :-1], y, l2)  # on x1
    w = np.column_stack([start[:-1] * sd, start[-1] + mean @ start[:-1]])
    solved = np.empty_like(w)
    value, q = terms(w, slice(None))
    for _ in range(steps):
        mq = work["m"] * q
        grad = (sums(work["s"] * mq)[:, None, :] @ work["t"])[:, 0] + w @ penalty
        moving = np.max(np.abs(grad), 1) >= work["tol"]
        solved[work["row"][~moving]] = w[~moving]
        if not moving.all():  # the converged fits leave the working set
            work = {k: v[moving] for k, v in work.items()}
            w, value, q, mq, grad = w[moving], value[moving], q[moving], mq[moving], grad[moving]
        if not moving.any():
            break
        h = mq * (1 - q)
        hess = np.empty((len(w), f1, f1))
        hess[:, -1] = sums(h)
        for f in range(f1 - 1):  # symmetric; the last row holds the constant's
            hess[:, f] = sums(h * work["x"][:, f])
        hess[:, :-1, -1] = hess[:, -1, :-1]
        hess = work["t"].transpose(0, 2, 1) @ hess @ work["t"] + penalty
        step = np.linalg.solve(hess + 1e-10 * np.eye(f1), grad[..., None])[..., 0]
        t = np.ones(len(w))
        new, q = terms(w - step, slice(None))
        worse = np.flatnonzero(new > value)
        while worse.size:  # halve until each descends
            t[worse] /= 2
            new[worse], q[worse] = terms(w[worse] - t[worse, None] * step[worse], worse)
            worse = worse[(new[worse] > value[worse]) & (t[worse] > 1e-10)]
        w, value = w - t[:, None] * step, new
    else:
        solved[work["row"]] = w
        warnings.warn(
            f"weighted_logistic_fits: {len(w)} of {len(m)} fits not converged after {steps} "
            "Newton steps",
            stacklevel=2,
        )
    w = np.einsum("bfg,bg->bf", to_x1, solved)  # on x1, then on the original features
    weights_x = w[:, :-1] / scale
    return np.column_stack([weights_x, w[:, -1] - weights_x @ shift])


def weighted_aurocs(scores, labels, weights) -> np.ndarray:
    """``[R]`` AUROCs of the rows of ``scores`` ``[R, N]``, question n counted
    ``weights[r, n]`` times: the AUROC of the explicitly repeated scores, ties counting 1/2,

        sum_{n pos, m neg} w_n w_m ([s_n > s_m] + [s_n = s_m] / 2) / (W_pos W_neg).
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    w = np.asarray(weights, np.float64)
    order = np.argsort(s, axis=1, kind="stable")
    s, w = np.take_along_axis(s, order, 1), np.take_along_axis(w, order, 1)
    pos_w, neg_w = w * y[order], w * ~y[order]
    below = np.cumsum(neg_w, 1) - neg_w  # negative weight strictly before, within a tie group
    first = np.ones(s.shape, bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    last = np.ones(s.shape, bool)
    last[:, :-1] = first[:, 1:]
    idx = np.arange(s.shape[1])
    start = np.maximum.accumulate(np.where(first, idx, 0), 1)
    end = np.minimum.accumulate(np.where(last, idx, s.shape[1])[:, ::-1], 1)[:, ::-1]
    less = np.take_along_axis(below, start, 1)
    tied = np.take_along_axis(below + neg_w, end, 1) - less
    return np.sum(pos_w * (less + tied / 2), 1) / (pos_w.sum(1) * neg_w.sum(1))


def bootstrap_folds(labels, resamples: int, folds: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, fold)``, both ``[resamples, N]``: stratified bootstrap resamples as
    multiplicities (each class resampled with replacement to its own size) and, per resample,
    a ``folds``-fold partition of the DISTINCT questions drawn, dealt like
    ``out_of_fold_scores`` deals all questions (each class round-robin after a shuffle), so a
    duplicated question never sits on both sides of a fit. Depends only on the labels and the
    seed (an int or a sequence of ints), so every score of the same questions is paired."""
    y = np.asarray(labels, bool)
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, len(y)), int)
    fold = np.zeros((resamples, len(y)), int)
    for members in (np.flatnonzero(y), np.flatnonzero(~y)):
        k = len(members)
        if k == 0:
            raise ValueError("a stratified bootstrap needs both positive and negative labels")
        draws = rng.integers(0, k, (resamples, k)) + k * np.arange(resamples)[:, None]
        counts[:, members] = np.bincount(draws.ravel(), minlength=resamples * k).reshape(-1, k)
        key = rng.random((resamples, k))
        key[counts[:, members] == 0] = 2.0  # absent questions are dealt last: they do not count
        order = np.argsort(key, 1)
        dealt = np.empty((resamples, k), int)
        np.put_along_axis(dealt, order, np.arange(k) % folds, 1)
        fold[:, members] = dealt
    return counts, fold


def refit_bootstrap_aurocs(
    features, labels, folds: int, resamples: int, seed, chunk: int = 64
) -> np.ndarray:
    """``[resamples]`` out-of-fold AUROCs on stratified bootstrap resamples, refitted in each:
    per ``bootstrap_folds`` resample, question n (drawn ``counts[n]`` times) is scored by the
    ``weighted_logistic_fits`` fit on the other folds' draws, and the resample's AUROC is the
    ``weighted_aurocs`` of those scores. Unlike a bootstrap of fixed out-of-fold scores,
    the draws carry the fit's variability (the sign and size of a noise feature's slope
    change from sample to sample). Paired: the resamples and folds depend only on the labels
    and the seed. ``bootstrap_p`` of two scores' paired differences is calibrated where both
    have skill and conservative where one is noise (simulated: tests/test_detection.py).
    ``chunk`` resamples are fitted at a time: few enough that the working arrays stay in cache
    (at N = 817, 64 ran 1.6x faster than 200)."""
    x = _feature_matrix(features)
    y = np.asarray(labels, bool)
    counts, fold = bootstrap_folds(y, resamples, folds, seed)
    x1 = np.column_stack([x, np.ones(len(y))])
    out = np.empty(resamples)
    for lo in range(0, resamples, chunk):
        c, f = counts[lo : lo + chunk], fold[lo : lo + chunk]
        train = (c[:, None, :] * (f[:, None, :] != np.arange(folds)[:, None])).reshape(-1, len(y))
        w = weighted_logistic_fits(x, y, train).reshape(len(c), folds, -1)  # [r, k, F + 1]
        scores = w @ x1.T  # [r, k, N]
        out[lo : lo + chunk] = weighted_aurocs(
            np.take_along_axis(scores, f[:, None, :], 1)[:, 0], y, c
        )
    return out


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
