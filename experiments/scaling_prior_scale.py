"""How large the width-scaled prior's scale must be for the MAP to fit: the evidence behind
``prior_scale`` in configs/scaling.toml, from MAP fits alone (no reference, no estimator).

Under N(0, scale^2 / fan_in) on the kernels, a network fitted to few points can sit at the
prior's mode (all outputs near zero, chance accuracy) instead of fitting the data; the gradient
norm at such a MAP says nothing. For each training-set size, width and scale, the sweep's own
data, initialisation and MAP (``experiments.scaling.prior_model``, ``gnuq.train.fit_map``) give
the training accuracy. The rule, fixed before any of these fits was read at N = 200: at each N,
the smallest of ``CANDIDATES`` whose MAP fits (training accuracy >= ``FIT``) at every width of
``WIDTHS``. Writes ``prior_scale.md`` beside the paper profile's scaling figures.

Run as ``python -m experiments.scaling_prior_scale`` (minutes on 2 cores).
"""

import pathlib
import warnings

import jax
import numpy as np

from experiments import scaling
from experiments.harness import config, report
from gnuq import likelihoods, problems, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCALES = (1.0, 2.0, 4.0, 8.0, 16.0)
CANDIDATES = (1.0, 2.0, 4.0, 8.0)
FIT = 0.9
WIDTHS = (8, 64, 256)
N_TRAIN = (50, 200, 1000)


def training_accuracy(
    cfg: scaling.Config, scale: float, width: int, n_train: int, seed: int = 0
) -> float:
    """The MAP's training accuracy for one unit of the sweep under the width-scaled prior with
    scale ``scale``."""
    problem = problems.get(cfg.problem)
    lik = likelihoods.get(problem.task)
    k_data, k_init, _ = jax.random.split(jax.random.key(seed), 3)  # as scaling.run_unit
    x, y = problem.sample(k_data, n_train)
    model, _, _ = scaling.prior_model(cfg, "width_scaled", k_init, (width, width), problem, scale)
    with warnings.catch_warnings():  # a MAP stuck at the prior's mode is what is measured
        warnings.simplefilter("ignore")
        fit = train.fit_map(model.apply, lik, model.params, x, y, cfg.map)
    return float(np.mean(np.argmax(model.apply(fit.params, x), -1) == y))


def chosen_scale(accuracy: dict[tuple[int, float], float]) -> float | None:
    """The rule: the smallest candidate scale whose MAP fits at every width (None: none does).
    ``accuracy``: ``{(width, scale): training accuracy}`` at one N."""
    fits = [s for s in CANDIDATES if all(accuracy[w, s] >= FIT for w in WIDTHS)]
    return min(fits, default=None)


def main() -> None:
    base, _, _ = config.cli(
        scaling.Config, ROOT / "configs" / "scaling.toml", ["--profile", "paper"]
    )
    header = ["N", "width", *(f"scale {s:g}" for s in SCALES)]
    body, chosen = [], {}
    for n in N_TRAIN:
        accuracy = {}
        for w in WIDTHS:
            row = [str(n), str(w)]
            for s in SCALES:
                accuracy[w, s] = acc = training_accuracy(base, s, w, n)
                print(f"N = {n}, width {w}, scale {s:g}: training accuracy {acc:.2f}", flush=True)
                row.append(f"{acc:.2f}")
            body.append(row)
        chosen[n] = chosen_scale(accuracy)
    caption = (
        "MAP training accuracy under the width-scaled prior N(0, scale² / fan-in) (biases "
        "N(0, 1)), 4-class rings, seed 0, MLP(w, w), the sweep's MAP settings; chance is about "
        "0.25-0.32: a MAP there sits at the prior's mode. The scale per N, by the rule (the "
        f"smallest of {', '.join(f'{s:g}' for s in CANDIDATES)} whose MAP reaches {FIT} at "
        "every width): "
        + ", ".join(f"N = {n}: {'none' if s is None else f'{s:g}'}" for n, s in chosen.items())
    )
    out = ROOT / "figures" / "paper" / "scaling"
    md, _ = report.rows_table(header, body, caption)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prior_scale.md").write_text(md + "\n")
    print(f"wrote {out / 'prior_scale.md'}")


if __name__ == "__main__":
    main()
