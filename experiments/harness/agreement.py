"""Every correlation a unit reports, with its 95% interval, its reference and its region.

Inside a unit (where the posterior draws' block moments are at hand), ``unit_agreements``
correlates every registered comparison (``methods.comparisons``) on every evaluation region, per
class and pooled, against every reference posterior the unit sampled, and stores each as one
small array; ``records`` turns those arrays into the results' records. The intervals are the
two-way block bootstrap of ``gnuq.stats.bootstrap_agreement``: spatial blocks of grid cells and
blocks of consecutive posterior draws (``gnuq.baselines.moments.block_bootstrap``), so they
cover the grid's and the reference's Monte Carlo error for one seed's data and MAP.

Regions: "box", the whole evaluation grid (the problem's box with its margin); "data", the grid
cells inside the bounding box of the seed's training inputs.
"""

import numpy as np

from experiments.harness import methods
from gnuq import stats
from gnuq.baselines import moments
from gnuq.baselines.mcmc import Reference

REGIONS = ("data", "box")
PAPER_REFERENCE = "NUTS from the MAP"  # the paper's protocol: every chain starts at the MAP
ROBUST_REFERENCE = "NUTS from independent MAPs"  # ours: chain i starts at the MAP of init i
BLOCKS_PER_AXIS = {1: 16, 2: 8}  # spatial blocks: 16 segments of a line, 8 x 8 tiles of a plane
FIELDS = ("pearson", "spearman", "pearson_lo", "pearson_hi", "spearman_lo", "spearman_hi")


def regions(grid, x_train) -> dict[str, np.ndarray]:
    """Boolean masks ``[G]`` of the grid cells in each region."""
    g = np.asarray(grid, np.float64).reshape(len(grid), -1)
    x = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
    inside = np.all((g >= x.min(0)) & (g <= x.max(0)), axis=1)
    return {"data": inside, "box": np.ones(len(g), bool)}


def diagnostic_arrays(d, reference: str = "") -> dict[str, np.ndarray]:
    """A reference's ``gnuq.mcmc.Diagnostics`` as unit arrays (``diagnostics_row`` reads them);
    ``reference`` names a unit's second reference posterior."""
    prefix = f"diagnostics/{reference}/" if reference else "diagnostics/"
    return {prefix + k: np.asarray(getattr(d, k)) for k in DIAGNOSTIC_FIELDS}


def diagnostics_summary(d, seconds: float) -> str:
    """One progress line of a reference's gate, e.g. for ``Context.log``."""
    return (
        f"R-hat {d.rhat_max:.3f}, bulk ESS {d.ess_bulk_min:.0f}, {d.divergences} divergent, "
        f"{'ok' if d.ok else 'FAILED the gate'} ({seconds:.0f} s)"
    )


DIAGNOSTIC_FIELDS = (
    "rhat_max",
    "ess_bulk_min",
    "divergences",
    "ok",
    "rhat_max_params",
    "ess_bulk_min_params",
    "rhat_max_predictive",
    "ess_bulk_min_predictive",
)


def unit_agreements(
    task: str,
    arrays: dict[str, np.ndarray],
    reference: Reference,
    name: str,
    grid,
    x_train,
    resamples: int,
    seed: int,
    pairs: bool = True,
) -> dict[str, np.ndarray]:
    """``agreement/<reference>/<region>/<quantity>/<method>`` arrays ``[rows, 6]`` (``FIELDS``;
    rows: each class then "overall", or "overall" alone) of every method of ``task`` against
    ``reference`` (called ``name``) and, with ``pairs``, of the paper's estimator against every
    other method (reference: that method's name), plus ``mcse/<name>/<quantity>``.

    ``arrays`` holds every ``Method.array`` ``[G, K]``.
    """
    cells, masks = _cells_and_regions(grid, x_train)
    sampled = _reference(reference, len(cells), resamples, seed)
    return _agreements(task, arrays, sampled, name, cells, masks, resamples, seed, pairs)


def every_agreement(
    task: str,
    arrays: dict[str, np.ndarray],
    reference: Reference,
    robust: Reference | None,
    grid,
    x_train,
    resamples: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """What a unit stores of its comparisons: every method against the paper-protocol
    ``reference`` (and the paper's estimator against the others) and, when the unit has the
    ``robust`` reference, every method against it, the robust reference against the paper's
    (as the method ``ROBUST_REFERENCE``, with the paper reference's Monte Carlo error in the
    interval), and its diagnostics. Each reference's bootstrap replicates are drawn once."""
    cells, masks = _cells_and_regions(grid, x_train)
    paper = _reference(reference, len(cells), resamples, seed)
    args = (cells, masks, resamples, seed)
    out = _agreements(task, arrays, paper, PAPER_REFERENCE, *args)
    if robust is None:
        return out
    ours = _reference(robust, len(cells), resamples, seed)
    out |= diagnostic_arrays(robust.diagnostics, ROBUST_REFERENCE)
    out |= _agreements(task, arrays, ours, ROBUST_REFERENCE, *args, pairs=False)
    values, _ = ours
    against = {f"{ROBUST_REFERENCE}/{q}": values[q] for q in methods.QUANTITIES}
    for quantity in methods.QUANTITIES:
        if not methods.comparisons(task, quantity):
            continue
        compared = [(ROBUST_REFERENCE, f"{ROBUST_REFERENCE}/{quantity}")]
        out |= _compare(against, compared, paper, quantity, PAPER_REFERENCE, None, *args)
    return out


def against_fixed(
    arrays: dict[str, np.ndarray],
    pairs: dict[tuple[str, str], tuple[str, str]],
    name: str,
    grid,
    x_train,
    resamples: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """``agreement/<name>/<region>/<quantity>/<method>`` arrays (as ``unit_agreements``) for
    ``pairs`` ``{(quantity, method): (estimate key, reference key)}`` of ``arrays`` ``[G, K]``,
    against a reference posterior whose draws are not at hand (a streamed reference keeps only
    its moments): its map is held fixed, so the interval covers the grid's spatial sampling but
    not the reference's Monte Carlo error."""
    cells, masks = _cells_and_regions(grid, x_train)
    args = (cells, masks, resamples, seed)
    out = {}
    for (quantity, method), (estimate, reference) in pairs.items():
        out |= _compare(arrays, [(method, estimate)], None, quantity, name, reference, *args)
    return out


def _agreements(
    task, arrays, sampled, name, cells, masks, resamples: int, seed: int, pairs: bool = True
) -> dict[str, np.ndarray]:
    """``unit_agreements`` on a reference's ``_reference`` values and replicates."""
    values, replicas = sampled
    args = (cells, masks, resamples, seed)
    out = {}
    for quantity in methods.QUANTITIES:
        rows = methods.comparisons(task, quantity)
        if not rows:
            continue
        out[f"mcse/{name}/{quantity}"] = _mcse(values[quantity], replicas[quantity])
        out |= _compare(arrays, [(m, a) for m, a, b in rows if b == "reference"], sampled,
                        quantity, name, None, *args)  # fmt: skip
        if pairs:  # each pair against its other method, the paper's estimator as "estimate"
            for m, a, b in rows:
                if b != "reference":
                    out |= _compare(arrays, [(m, a)], sampled, quantity, b.split("/")[-1], b, *args)
    return out


def _compare(
    arrays, compared, sampled, quantity: str, tag: str, against, cells, masks, resamples, seed
) -> dict[str, np.ndarray]:
    """``agreement/<tag>/<region>/<quantity>/<method>`` of every ``(method, array key)`` in
    ``compared`` against the reference ``sampled`` (``against`` None) or the fixed
    ``arrays[against]``."""
    if against is None:
        values, replicas = sampled
        ref, reps = values[quantity], replicas[quantity]
    else:
        ref, reps = arrays[against], None
    out = {}
    for region, mask in masks.items():
        tables = _rows(
            [arrays[a][mask] for _, a in compared], ref[mask], cells[mask],
            None if reps is None else reps[:, mask], resamples, seed,
        )  # fmt: skip
        for (method, _), table in zip(compared, tables, strict=True):
            out[f"agreement/{tag}/{region}/{quantity}/{method}"] = table
    return out


def _cells_and_regions(grid, x_train) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    g = np.asarray(grid, np.float64).reshape(len(grid), -1)
    return stats.grid_blocks(g, BLOCKS_PER_AXIS.get(g.shape[1], 4)), regions(g, x_train)


def _reference(ref: Reference, n: int, resamples: int, seed: int):
    """``({quantity: [G, K]}, {quantity: [R, G, K] bootstrap replicates})``."""
    reps = moments.block_bootstrap(ref.blocks, resamples, seed)
    values = {q: np.asarray(getattr(ref, q)).reshape(n, -1) for q in methods.QUANTITIES}
    return values, {"epistemic": reps.variance, "aleatoric": reps.ale}


def _mcse(values: np.ndarray, replicas: np.ndarray) -> np.ndarray:
    """[median over cells of se / value, mean se^2 / variance of the values over cells]: the
    second is the share of the map's spread that Monte Carlo noise makes up."""
    se = replicas.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.nanmedian(se / values)
    return np.array([rel, np.mean(se**2) / np.var(values)])


def _rows(estimates, ref, cells, reps, resamples: int, seed: int) -> list[np.ndarray]:
    """Per estimate ``[rows, 6]``: per class (when K > 1) then pooled; ``reps``: ``[R, G, K]``
    replicates of ``ref`` or None (a fixed ``ref``)."""
    k = ref.shape[1]
    out = [[] for _ in estimates]
    for cols in [*([c] for c in range(k) if k > 1), list(range(k))]:
        found = stats.bootstrap_agreements(
            [e[:, cols] for e in estimates], ref[:, cols], cells,
            reference_replicates=None if reps is None else reps[:, :, cols],
            resamples=resamples, seed=seed,
        )  # fmt: skip
        for rows, a in zip(out, found, strict=True):
            rows.append([a.pearson, a.spearman, *a.pearson_ci, *a.spearman_ci])
    return [np.asarray(rows) for rows in out]


def records(arrays: dict[str, np.ndarray], base: dict) -> list[dict]:
    """The records of one unit's ``agreement/...`` arrays: one per class and "overall"."""
    out = []
    for name, table in arrays.items():
        if not name.startswith("agreement/"):
            continue
        _, reference, region, quantity, method = name.split("/", 4)
        table = np.atleast_2d(table)
        classes = [*range(len(table) - 1), "overall"] if len(table) > 1 else ["overall"]
        for klass, row in zip(classes, table, strict=True):
            v = dict(zip(FIELDS, (float(x) for x in row), strict=True))
            out.append(
                base
                | {"quantity": quantity, "method": method, "class": klass}
                | {"pearson": v["pearson"], "spearman": v["spearman"]}
                | {
                    "pearson_ci": _clip(v["pearson_lo"], v["pearson_hi"]),
                    "spearman_ci": _clip(v["spearman_lo"], v["spearman_hi"]),
                    "reference": reference,
                    "region": region,
                }
            )
    return out


def _clip(lo: float, hi: float) -> list[float]:
    return [max(-1.0, lo), min(1.0, hi)]
